"""Text normalisation before word-level toxicity scoring.

alt-profanity-check scores bag-of-words features, so a word missing from its vocabulary adds
nothing: masked profanity ("F**k", "s**t") and compounds or dialect spellings built
on a profane stem ("shitlords", "muthafucka", "motherfuckin") score as clean text, and so does
sexual content without swear words ("his genitals"), which Perspective scores high. Each step
here rewrites such words into ones the classifier knows; the calibration file records which
steps its fit used, and a step is kept only where it improves the held-out figures
(``bench/toxicity_calibration.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Full forms a masked word may stand for; the shortest form that fits the visible letters wins.
PROFANE_FORMS = (
    "motherfuckers", "motherfucker", "motherfucking", "fucking", "fucked", "fucker", "fuckers", "fucks",
    "fuck", "bullshit", "shitty", "shit", "assholes", "asshole", "bitches", "bitch", "bastard", "cunt",
    "cocksucker", "cock", "dick", "pussy", "niggers", "nigger", "nigga", "faggot", "whore", "slut", "damn",
    "goddamn", "goddamned", "piss", "ass", "hell", "crap", "twat", "wanker", "prick",
)
_KNOWN = frozenset(PROFANE_FORMS)

# letters, a run of mask symbols, letters; not inside a longer token. Dashes ("f---ing", "s—")
# are left alone: Perspective scores dash-masked words as mild, unlike "f**k".
_MASKED = re.compile(r"(?<![\w*#@$%!])([A-Za-z]+)([*#@$%!]+)([A-Za-z]*)(?![\w*#@$%!])")
# a profane stem inside a longer word. Stems common inside clean words (dick, cock, ass) are left
# out; those that also hide in clean words' middles ("Scunthorpe", "snigger") must start the word.
_STEM = re.compile(r"\b(\w*?)(fuck|shit|bitch)(\w*)\b|\b()(cunt|nigg|whore|slut)(\w*)\b", re.IGNORECASE)


def _unmask_one(m: re.Match[str]) -> str:
    pre, mask, suf = m.group(1).lower(), m.group(2), m.group(3).lower()
    if not suf and set(mask) == {"!"}:
        return m.group(0)  # "Da!!", "As!": exclamation, not a mask
    best: str | None = None
    for form in PROFANE_FORMS:
        # one symbol per hidden letter
        if len(form) - len(pre) - len(suf) != len(mask) or not (form.startswith(pre) and form.endswith(suf)):
            continue
        if best is None or len(form) < len(best):
            best = form
    return best if best is not None else m.group(0)


def unmask_profanity(text: str) -> str:
    """Spell out masked profanity: ``F**k`` → ``fuck``, ``a**hole`` → ``asshole``, ``s**t`` → ``shit``."""
    return _MASKED.sub(_unmask_one, text)


def _stem_one(m: re.Match[str]) -> str:
    word = m.group(0)
    pre, stem, suf = m.group(1, 2, 3) if m.group(2) else m.group(4, 5, 6)
    if word.lower() in _KNOWN or not (pre or suf):
        return word
    stem = stem.lower()
    return f"{word} {'nigger' if stem == 'nigg' else stem}"


def profane_stems(text: str) -> str:
    """Add the profane stem after a word built on it: ``shitlords`` → ``shitlords shit``."""
    return _STEM.sub(_stem_one, text)


# Sexual and anatomical words that Perspective scores as toxic and the classifier's vocabulary
# lacks or scores low; words with a common clean sense ("erect", "thrust", "breast") are left out.
_SEXUAL = re.compile(
    r"\b(genitals?|genitalia|vaginas?|vaginal|vulvas?|clitoris|clit|labia|penis(es)?|penile|erections?|"
    r"ejaculat\w*|orgasm\w*|cunnilingus|fellatio|blowjobs?|masturbat\w*|rap(e|ed|es|ist|ists|ing)|breasts|"
    r"buttocks|anal|anus|semen|sperm|dildos?|porn\w*|nude|naked|boob(s|y)?|testicles?|scrotum|horny|intercourse)\b",
    re.IGNORECASE,
)


def sexual_terms(text: str) -> str:
    """Add ``sex`` after each sexual or anatomical term: ``his genitals`` → ``his genitals sex``."""
    return _SEXUAL.sub(lambda m: f"{m.group(0)} sex", text)


NORMALISERS: dict[str, Callable[[str], str]] = {
    "unmask_profanity": unmask_profanity,
    "profane_stems": profane_stems,
    "sexual_terms": sexual_terms,
}


def normaliser(steps: tuple[str, ...] | list[str]) -> Callable[[str], str]:
    """One function applying the named steps in order; an unknown name raises ValueError."""
    unknown = [s for s in steps if s not in NORMALISERS]
    if unknown:
        raise ValueError(f"unknown normalisation step(s) {unknown}; known: {sorted(NORMALISERS)}")
    fns = [NORMALISERS[s] for s in steps]

    def apply(text: str) -> str:
        for fn in fns:
            text = fn(text)
        return text

    return apply
