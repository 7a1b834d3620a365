"""Serving: the model server run by seldon-core, local deployments, SeldonDeployment manifests."""
