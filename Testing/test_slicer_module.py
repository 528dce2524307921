"""What the Slicer module's cohort buttons launch, checked against the library's model declarations."""

from TACEPredictLib.imaging.deep_features import FEATURE_SIZES
from TACEPredictLib.models import registry
from TACEPredictLib.slicer import COHORT_BACKBONES


def test_the_module_extracts_every_backbone_a_trained_model_reads_by_default():
    # A model whose default backbone the module's Extract leaves out fails at the module's Train ("the features
    # have no 'resnet101' family"): DLOP-Combin's did when its default became the paper's ResNet101.
    read = set()
    for spec in registry.models_of(trained=True):
        model = registry.make_model(spec.task, spec.kind)
        # a model's feature family, or the frozen backbone whose extracted vectors it reuses (the mRECIST head)
        for backbone in (getattr(model, "family", None), getattr(model, "backbone", None)):
            if backbone in FEATURE_SIZES:
                read.add(backbone)
    assert {"densenet121", "resnet101", "resnet50"} <= read
    assert read <= set(COHORT_BACKBONES)
    assert set(COHORT_BACKBONES) <= set(FEATURE_SIZES)
