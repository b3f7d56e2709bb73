"""How the local token estimator (proxy.translation.estimate) was measured: ``corpus`` builds a
corpus of mixed text, code and tool JSON from files on this machine, with real token counts from
tokenizers that ship their data in PyPI wheels (run once, outside the gateway's environment);
``corpus.json`` keeps the samples and their counts, so ``report`` and the tests measure the
estimator against them without any tokenizer installed."""
