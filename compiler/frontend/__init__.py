"""The front end: concrete ``Tensor``s, lazily traced ``Variable``s, and the
machinery that turns a recorded graph into an IR ``Function``."""
