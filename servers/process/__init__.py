"""Process supervision: N workers on one port (``supervisor``, ``worker``, ``listen``), their
shared counters (``metrics``), garbage collection (``gcpolicy``) and stopping children
(``procs``)."""
