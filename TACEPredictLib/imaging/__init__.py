"""Imaging: preprocessing, lesion sampling, radiomics, deep features, Grad-CAM, cohort extraction."""
