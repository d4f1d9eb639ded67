"""Client-side tools: the client library users, `send`, `tail`, `bench`."""
