"""Data: image-folder discovery, class labels and splits, the paper's datasets, the built-in set,
transforms, samplers, decoding."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".folder": "IMAGE_EXTENSIONS Sample find_images is_image labelled_samples",
    ".labels": "class_of label_paths",
    ".splits": "SPLITS build_split split_dirs split_folder",
    ".retrieval_split": "DATASET_KINDS DATASETS HASHING_DATASETS RetrievalSplit",
    ".paper_datasets": "load_paper_dataset",
    ".builtin": "builtin_dataset",
    ".loading": "ImageDataset",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
