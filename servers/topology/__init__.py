"""The production topology: load balancers in front (``haproxy``, ``nginx``, ``front``), Redis
(``redisd``), the simulated LLM's process (``producer``), and what runs them together
(``topology``)."""
