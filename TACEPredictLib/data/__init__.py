"""Cohort data: the manifest, images and segmentations, the synthetic demo cohort, importers, outcomes and
model inputs."""
