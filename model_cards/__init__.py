"""Model-card templates of hf-hdcid (Jinja, rendered by ``hf_hdcid.hub`` with ``ModelCard.from_template``).

Installed as the package ``hf_hdcid.model_cards`` so that the templates ship in the wheel.
"""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
HDCID_CARD_TEMPLATE = TEMPLATE_DIR / "hdcid_card.md"

__all__ = ["TEMPLATE_DIR", "HDCID_CARD_TEMPLATE"]
