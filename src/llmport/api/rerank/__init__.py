"""Reranking (``/v1/rerank``, ``/rerank``) and scoring (``/v1/score``) with reranker GGUFs."""
