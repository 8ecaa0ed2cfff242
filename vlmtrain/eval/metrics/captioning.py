"""Caption metrics with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

The COCO caption evaluation first runs Stanford's PTB tokenizer (Java) on references and
predictions, then scores. pycocoevalcap's `Cider` is CIDEr-D (clipped n-gram counts, length
penalty with sigma 6, x10), the variant every COCO paper reports. Its document frequencies come
from the evaluated references, so scores are only comparable on the same test set.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence

from vlmdata.core.errors import DataError

ALL_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
# Characters Stanford's PTBTokenizer (-preserveLines) ends a line at, besides "\n" (which the
# pycocoevalcap wrapper already turns into a space). Found by feeding each candidate through
# the tokenizer: "\x85" and "\x1c"-"\x1e" do not break lines, these do.
LINE_BREAKS = re.compile("[\r\x0b\x0c\u2028\u2029]")


def require_java() -> str:
    """Path to `java`, or a DataError explaining how to get it."""
    java = shutil.which("java")
    if java is None:
        raise DataError(
            "caption metrics need Java (pycocoevalcap's PTB tokenizer and METEOR run on the "
            "JVM): install it (e.g. `apt-get install default-jre-headless`) and retry"
        )
    return java


def ptb_tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Lower-cased PTB tokens without punctuation, per image; empty captions stay empty.

    The Java tokenizer works line by line and the wrapper zips its output back to the input:
    a caption holding a line break other than "\\n" would push every later caption onto the
    wrong image, so those characters become spaces first (the one place where the result
    differs from pycocoevalcap, which misaligns there). An empty last line can go missing;
    such images get "" back rather than vanishing.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    require_java()
    wrapped = {k: [{"caption": LINE_BREAKS.sub(" ", c)} for c in v] for k, v in captions.items()}
    out = PTBTokenizer().tokenize(wrapped)
    result: dict[str, list[str]] = {}
    for key, caps in captions.items():
        got = out.get(key, [])
        result[key] = [got[i] if i < len(got) else "" for i in range(len(caps))]
    return result


def caption_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = ALL_METRICS,
    tokenize: bool = True,
) -> dict[str, float]:
    """Corpus-level scores for {image: prediction} against {image: [references]}.

    Every referenced image needs a prediction and vice versa (DataError otherwise): scoring a
    subset would quietly change CIDEr's document frequencies.
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown caption metrics {unknown}; choose from {ALL_METRICS}")
    _check_keys(predictions, references)
    if not predictions:
        raise DataError("no predictions to score")
    keys = sorted(predictions)
    if tokenize:
        res = ptb_tokenize({k: [predictions[k]] for k in keys})
        gts = ptb_tokenize({k: list(references[k]) for k in keys})
    else:
        res = {k: [predictions[k]] for k in keys}
        gts = {k: list(references[k]) for k in keys}
    return _score(gts, res, metrics)


def _check_keys(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    missing = sorted(set(references) - set(predictions))
    extra = sorted(set(predictions) - set(references))
    if missing or extra:
        raise DataError(
            f"predictions and references disagree: {len(missing)} images without a prediction "
            f"(e.g. {missing[:3]}), {len(extra)} predictions without references (e.g. {extra[:3]})"
        )
    empty = sorted(k for k, refs in references.items() if len(refs) == 0)
    if empty:
        raise DataError(f"{len(empty)} images have no reference captions (e.g. {empty[:3]})")


def _score(
    gts: dict[str, list[str]], res: dict[str, list[str]], metrics: Sequence[str]
) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    wanted = set(metrics)
    out: dict[str, float] = {}
    if wanted & {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"}:
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for n, value in enumerate(bleu, start=1):
            if f"BLEU-{n}" in wanted:
                out[f"BLEU-{n}"] = float(value)
    if "METEOR" in wanted:
        out["METEOR"] = _meteor(gts, res)
    if "ROUGE-L" in wanted:
        out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr-D" in wanted:
        out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    return {m: out[m] for m in metrics}


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    require_java()
    scorer = Meteor()  # a JVM subprocess; its __del__ stops it
    return float(scorer.compute_score(gts, res)[0])
