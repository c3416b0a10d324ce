"""Datasets for STG-CMA: SynthAV, AVE, AVSBench and MUSIC-AVQA."""
