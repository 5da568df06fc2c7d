"""Models: the embedding model and the language model.

Owns loading the embedding model (`embeddings`; on torch in `local_embedding`, on ONNX Runtime
in `onnx_embedding`, the backend measured and chosen in `backends`; or a server's in
`server_embedding`), the LLM choice (`llm`: an OpenAI-compatible server, the local GGUF model,
or none) and the local model's supervised child process (`local_model`, `local_model_server`).
May import only the top-level `config` and `errors`: every other part of `rag` builds on it.
"""
