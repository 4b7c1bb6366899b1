"""tokenbench: load generation, fault injection, results and reports."""
