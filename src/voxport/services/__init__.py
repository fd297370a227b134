"""One implementation per capability, shared by every door (CLI, batch files, Ray jobs, HTTP, WebSockets,
Python): the family's defaults, long text and voice context, length budget, seeds, batching, streaming."""
