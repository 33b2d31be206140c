"""Deterministic text for curation tests: ~120-word documents and edited copies."""

import random

VOCAB = ("river stone garden market window silver engine paper forest signal harbor lantern "
         "meadow copper thunder violet marble canyon orchard pepper ribbon saddle timber velvet "
         "anchor basket candle dragon falcon glacier hammer island jungle kettle ladder magnet "
         "needle oyster pillar quartz rocket shadow tunnel umbrella valley wizard yogurt zebra "
         "bright calm eager gentle humble jolly kind lively merry noble proud quick brave clever "
         "walks builds carries draws finds gathers holds joins keeps lifts moves opens paints "
         "reads sends turns writes").split()


def document(seed: int, words: int = 120) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) + (str(rng.randint(0, 99)) if rng.random() < 0.3 else "")
                    for _ in range(words))


def edited(text: str, seed: int, fraction: float = 0.03) -> str:
    """A copy with about `fraction` of its words replaced."""
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(len(words) * fraction))):
        words[i] = f"changed{rng.randint(0, 10**6)}"
    return " ".join(words)
