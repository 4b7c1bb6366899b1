"""Where a worker's tokens come from and where a resume is answered from: derived streams or a
producer's answers (``replay``, ``answers``), and the stop button's table (``stops``)."""
