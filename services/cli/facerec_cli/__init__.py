"""The ``facerec`` command: talks to the gateway over HTTP, never to Redis or the index."""
