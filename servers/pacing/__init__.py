"""When tokens go out: the pacing loop every stock and lean stack runs (``loop``), one wake-up
scheduler per process (``hub``), and the floor stack's timer wheel (``wheel``)."""
