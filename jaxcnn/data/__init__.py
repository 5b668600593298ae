"""Data: image files and their preprocessing to the MNIST convention, the Chars74K and class-folder
layouts, MNIST's IDX files and their download, label corruption, and the audit of a data set.
Imports nothing above itself (only ``jaxcnn.errors``, ``paths``, ``progress``, ``rundir``)."""
