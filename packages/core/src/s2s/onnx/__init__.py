"""Encoder tasks on ONNX Runtime: ``s2s export DIR --format onnx`` writes a folder
(:mod:`.export`) that ``load_model(checkpoint=folder)`` runs (:mod:`.runtime`).

The backbone is what goes to ONNX (it is nearly all of the work); the task's head and its
decoding (CRF Viterbi, GlobalPointer spans, pooling) stay in PyTorch, the same code as
``predict`` runs on the PyTorch model. Needs the optional extra ``s2s-core[onnx]``.
"""

# The exported graph's inputs, in order.
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
