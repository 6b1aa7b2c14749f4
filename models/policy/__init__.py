"""The serving policy and its evaluation: the contextual Thompson-sampling bandit (``bandit``,
``context``) and off-policy evaluation of logged lists (``ope``)."""
