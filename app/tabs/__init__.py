"""One module per tab; each has a class whose ``build()`` lays out components and whose methods are the handlers."""
