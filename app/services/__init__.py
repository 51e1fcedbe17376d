"""The work behind the routes: model loading, dynamic batching, inference and feature maps."""
