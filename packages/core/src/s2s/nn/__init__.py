"""Building blocks of backbones: attention masks (:mod:`.masks`), attention (SDPA, or eager on
the CPU with dropout) and attention of grouped query rows over shared keys/values
(:mod:`.attention`), padded batches as their real tokens (:mod:`.packing`) and linear maps on
prepacked weights for CPU inference (:mod:`.prepacked`; bf16 training on CPUs without bf16
kernels: :mod:`.cpu_bf16`), weight initialisation (:mod:`.init`), models built without weights
for a checkpoint to fill (:mod:`.meta`),
dropout with a cheaper CPU mask (:mod:`.dropout`), activations by their Hugging Face names
(:mod:`.activations`), LayerNorm without the module call and RMS norm (:mod:`.norms`)."""
