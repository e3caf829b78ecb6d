"""Cost estimates from catalog prices (see :mod:`.prices`)."""
