"""The Slicer side that needs no Slicer GUI: the MRML scene adapter and the one-patient path."""

# What the module's cohort Extract computes, and so what its cohort Train can read: every backbone a trained model
# reads by default (the deep signature and nomograms: DenseNet121, paper 000; DLOP-Combin: ResNet101, paper 001;
# the mRECIST head reuses the extraction's ResNet-50 vectors, paper 003). Testing/test_slicer_module.py checks it
# against the registry.
COHORT_BACKBONES = ("densenet121", "resnet50", "resnet101")
