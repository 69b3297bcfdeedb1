"""Preloaded last by the worker server of the ``processes`` scheduler (never imported
elsewhere): moves every object the server's imports made into the garbage collector's
permanent generation (:func:`gc.freeze`). The workers forked from it inherit that, so their
full collections no longer walk the imports' ~150,000 objects (nor write to their pages,
which the workers share with the server until then); and the server's own exit, when the
run ends, skips the final collections that freed nothing that matters."""

import gc

gc.freeze()
