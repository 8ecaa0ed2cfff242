"""The closed sets an option's value comes from, declared once.

The library validates against these and the CLI builds its `click.Choice` lists from them, so a
new mode is added in one place. Nothing is imported here: `vlmdata --help` reads this module.
"""

# `vlmdata shard` / ShardOptions: our writer's resize, re-encode and engines
RESIZE_MODES = ("keep_ratio", "center_crop", "border")
REENCODE_FORMATS = ("jpg", "png", "webp")
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")
# a second image id with the same bytes: another record of the stored image, or a reject
DUPLICATE_IMAGE_RULES = ("share", "reject")

# `vlmdata download`: img2dataset's own resize modes and image formats (FetchOptions)
FETCH_RESIZE_MODES = ("no", "border", "keep_ratio", "keep_ratio_largest", "center_crop")
FETCH_ENCODE_FORMATS = ("jpg", "png", "webp")

# `vlmdata manifest`: the source readers (vlmdata.sources.SOURCES, same order) and karpathy's
# restval rule ("train": fold restval into train; "skip": a skipped_restval reject)
SOURCE_NAMES = ("cc3m", "karpathy", "coco", "oven", "oven-kb", "llava", "vqav2")
RESTVAL_RULES = ("train", "skip")

# `vlmdata build-ids`: the identifier schemes (vlmdata.ids.build)
ID_SCHEMES = ("numeric", "string", "semantic", "structured", "atomic")
