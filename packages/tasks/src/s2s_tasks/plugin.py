"""Registers this package's tasks with s2s."""

from s2s import hookimpl


@hookimpl
def register_tasks(register):
    from .causal_lm import CausalLM
    from .chat import Chat
    from .classification import Classification
    from .embedding import Embedding
    from .labeling import CRFLabeling, GlobalPointerLabeling, SequenceLabeling
    from .matching import Matching
    from .mlm import MaskedLM
    from .relation import RelationExtraction
    from .seq2seq import Seq2Seq
    from .sft import SFT
    from .simbert import SimBert

    register("classification", Classification, aliases=("cls",))
    register("matching", Matching)
    register("embedding", Embedding)
    register("mlm", MaskedLM, aliases=("masked_lm",))
    register("sequence_labeling", SequenceLabeling, aliases=("ner",))
    register("crf", CRFLabeling)
    register("global_pointer", GlobalPointerLabeling)
    register("relation_extraction", RelationExtraction, aliases=("gplinker",))
    register("seq2seq", Seq2Seq, aliases=("unilm",))
    register("causal_lm", CausalLM, aliases=("lm", "writing"))
    register("chat", Chat, aliases=("dialogue",))
    register("sft", SFT, aliases=("instruction_tuning",))
    register("simbert", SimBert, aliases=("similar_sentences",))
