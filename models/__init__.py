"""The shipped model files (installed as ``ser_edge.models_data``); see MODEL_CARD.md."""
