"""The HTTP side: the routes, who may call them and how often, reading uploads, and the responses."""
