"""The Slicer side that needs no Slicer GUI: the MRML scene adapter and the one-patient path."""
