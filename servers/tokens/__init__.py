"""The token model clients share too: streams, ids, schedule and cursors (``core``), the texts
(``texts``), the simulated LLM's timing (``llm``). Sans-I/O."""
