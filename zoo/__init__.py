"""zoo: timm backbones with global covariance pooling heads (work in progress, see issue 4)."""
