"""The fraud model: features, time-ordered splits, training, evaluation, the saved artifact.

Plain functions over DataFrames and arrays, so the KFP steps stay thin and the
same code is unit-tested without a pipeline.
"""
