"""Data: image-folder discovery and splits, the paper's datasets, the built-in set, transforms, samplers."""

from hashpa.data.builtin import builtin_dataset
from hashpa.data.folder import ImageDataset, Sample, find_images, labelled_samples
from hashpa.data.paper_datasets import DATASETS, load_paper_dataset
from hashpa.data.splits import SPLITS, RetrievalSplit, split_dirs, split_folder

__all__ = [
    "DATASETS",
    "SPLITS",
    "ImageDataset",
    "RetrievalSplit",
    "Sample",
    "builtin_dataset",
    "find_images",
    "labelled_samples",
    "load_paper_dataset",
    "split_dirs",
    "split_folder",
]
