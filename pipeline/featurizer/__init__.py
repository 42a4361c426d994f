"""The featurize + classify program: DeepImageFeaturizer, the named-model registry, the
featurization step, the classifier, and the train and evaluate jobs' library.

``pipeline.featurizer.DeepImageFeaturizer`` is the name saved PipelineModels record for the
featurizer stage, so it is importable from here (see ``transformer``).
"""
from pipeline.featurizer.transformer import DeepImageFeaturizer

__all__ = ["DeepImageFeaturizer"]
