"""gcp.finegrained: fine-tuning GCP models on CUB-200-2011, Stanford Cars, FGVC-Aircraft and Stanford
Dogs in their native formats (``gcp-finetune``, ``python -m gcp.finegrained.finetune``)."""
