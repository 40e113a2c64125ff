"""Training, tokenizer and GGUF export of moeviz's shipped demo model (moeviz/data/demo-moe.gguf).

A development tool only (`make demo-model`): the rest of moeviz never imports this
package at run time, and only `train` / `model` need PyTorch (the corpus, tokenizer
and export modules are numpy + gguf + llama.cpp, so tests can use them).
"""
