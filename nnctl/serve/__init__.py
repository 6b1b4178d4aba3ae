"""``nnctl serve``: a checkpoint behind HTTP. ``predictor`` turns raw records into answers, ``app``
builds the ASGI application (importable without starting a server), ``server`` runs it."""
