"""finegrained: fine-tuning GCP models on CUB-200-2011, Stanford Cars and FGVC-Aircraft (issue 6)."""
