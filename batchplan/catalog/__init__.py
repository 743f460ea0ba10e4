"""The catalog: prices, tiers, limits and model facts as data, each with its
source and date (``data/catalog.json``), read into typed values; and the two
things every layer above needs to agree on: how money is formatted
(``money``) and how a vision model turns an image into tokens (``vision``).
It imports nothing else of batchplan's but ``errors``.
"""

from batchplan.catalog.catalog import Catalog, Model, default_catalog, load_catalog
from batchplan.catalog.money import exact, money
from batchplan.catalog.vision import VisionRule
from batchplan.errors import CatalogError

__all__ = ["Catalog", "CatalogError", "Model", "VisionRule", "default_catalog", "exact", "load_catalog", "money"]
