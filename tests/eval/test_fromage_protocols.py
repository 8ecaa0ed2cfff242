"""FROMAGe's published retrieval protocols: VIST contextual retrieval and VisDial.

Fixture files are written in the published shapes: VIST's story-in-sequence JSON
(visionandlanguage.net/VIST, SIS-with-labels.tar.gz, `sis/val.story-in-sequence.json`:
{"images": [{id, url_o, ...}], "albums": [...], "type_": "story_in_sequence", "annotations":
[[{story_id, text, original_text, photo_flickr_id, worker_arranged_photo_order, album_id,
setting_id, storylet_id, tier}]]}) and VisDial 1.0 (visualdialog.org, `visdial_1.0_val.json`:
{"version": "1.0", "split": "val2018", "data": {"questions", "answers", "dialogs": [{image_id,
caption, dialog: [{question, answer, answer_options, gt_index}]}]}}). Recall@K figures are
worked by hand from kohjingyu/fromage `evals/eval_vist_retrieval.py` and
`evals/eval_visdial_retrieval.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.vlmtrain import main
from vlmdata.core.errors import DataError
from vlmtrain.eval.metrics.context_retrieval import visdial_recall, vist_recall
from vlmtrain.eval.options import VisdialOptions, VistOptions
from vlmtrain.eval.tasks.visdial import read_dialogs, run_visdial
from vlmtrain.eval.tasks.vist import read_stories, run_vist, story_context

KS = (1, 2, 3)


def sis_file(path, stories: dict[str, list[tuple[str, str]]]):
    """A story-in-sequence file: story id -> [(photo id, text)] in worker order."""
    anns, photos = [], {}
    for n, (sid, steps) in enumerate(stories.items()):
        for order, (photo, text) in enumerate(steps):
            photos[photo] = {"id": photo, "url_o": f"https://farm.example/{photo}.jpg",
                             "album_id": "a1", "datetaken": "2010-01-01 00:00:00"}  # fmt: skip
            anns.append([{"story_id": sid, "text": text, "original_text": text.upper(),
                          "photo_flickr_id": photo, "worker_arranged_photo_order": order,
                          "album_id": "a1", "setting_id": str(n), "storylet_id": f"{sid}{order}",
                          "tier": "story-in-sequence"}])  # fmt: skip
    data = {"images": list(photos.values()), "albums": [{"id": "a1"}],
            "type_": "story_in_sequence", "annotations": anns}  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def visdial_file(path, dialogs: list[tuple[int, list[tuple[str, str]]]]):
    """VisDial 1.0: questions/answers are shared string tables, rounds index into them."""
    questions, answers, out = [], [], []
    for image_id, rounds in dialogs:
        turns = []
        for q, a in rounds:
            questions.append(q)
            answers.append(a)
            turns.append({"question": len(questions) - 1, "answer": len(answers) - 1,
                          "answer_options": [len(answers) - 1] * 100, "gt_index": 0})  # fmt: skip
        out.append({"image_id": image_id, "caption": "a caption not used", "dialog": turns})
    data = {"version": "1.0", "split": "val2018",
            "data": {"questions": questions, "answers": answers, "dialogs": out}}  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def test_vist_recall_hand_worked():
    """Images a..e on the unit circle; story 1 (query (1,0), earlier a and b, target c): a and b
    score highest but are seen, so d, c, e: c is 2nd. Story 2 (query (0,1), earlier c and d,
    target e): e first. R@1 = 1/2, R@2 = R@3 = 1. Without the exclusion c would be 4th."""
    ids = ["a", "b", "c", "d", "e"]
    images = np.array([[1, 0], [0.96, 0.28], [0.6, 0.8], [0.8, 0.6], [0, 1]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    got = vist_recall(queries, images, ids, ["c", "e"], [["a", "b"], ["c", "d"]], KS)
    assert got == {1: 0.5, 2: 1.0, 3: 1.0}
    unseen = vist_recall(queries, images, ids, ["c", "e"], [[], []], KS)
    assert unseen == {1: 0.5, 2: 0.5, 3: 0.5}


def test_visdial_recall_hand_worked():
    """scores = images @ texts.T. Rows (the script): image 0 ranks dialog 0 first; image 1
    ranks dialog 2 (1.0) over its own (0.96); image 2 ranks dialog 1 (0.936) over its own (0.8):
    R@1 = 1/3. Columns (dialog -> images): dialog 0 -> image 0, dialog 1 -> image 1 (0.96 >
    0.936), dialog 2 -> image 1 (1.0) over image 2 (0.8): R@1 = 2/3."""
    images = np.array([[1, 0], [0, 1], [0.6, 0.8]])
    texts = np.array([[1, 0], [0.28, 0.96], [0, 1]])
    got = visdial_recall(texts, images, KS)
    assert got["script"] == {1: pytest.approx(1 / 3), 2: 1.0, 3: 1.0}
    assert got["t2i"] == {1: pytest.approx(2 / 3), 2: 1.0, 3: 1.0}


def test_vist_reader_groups_stories_in_file_order(tmp_path):
    steps = [(f"p{i}", f"caption {i}") for i in range(5)]
    path = sis_file(tmp_path / "val.story-in-sequence.json",
                    {"45530": steps, "45531": steps[::-1]})  # fmt: skip
    stories = read_stories(path)
    assert [s.story_id for s in stories] == ["45530", "45531"]
    assert stories[0].image_ids == ["p0", "p1", "p2", "p3", "p4"]
    assert stories[1].captions[0] == "caption 4"
    imgs = {f"p{i}": Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(5)}
    full = story_context(stories[0], imgs)
    assert full == ["caption 0", imgs["p0"], "caption 1", imgs["p1"], "caption 2", imgs["p2"],
                    "caption 3", imgs["p3"], "caption 4"]  # fmt: skip
    assert story_context(stories[0], imgs, captions=1) == ["caption 4"]
    assert story_context(stories[0], imgs, with_images=False) == [f"caption {i}" for i in range(5)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": [[{"story_id": "1", "text": "x"}]]}))
    with pytest.raises(DataError, match=r"annotation 1 lacks \['photo_flickr_id'\]"):
        read_stories(bad)


def test_visdial_reader_builds_the_scripts_context(tmp_path):
    path = visdial_file(tmp_path / "visdial_1.0_val.json",
                        [(185565, [("is it red", "yes"), ("how many", "two")])])  # fmt: skip
    split, dialogs = read_dialogs(path)
    assert split == "val2018"
    assert dialogs == [(185565, "Q: is it red? A: yes. Q: how many? A: two.")]
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "data": {
                    "questions": [],
                    "answers": [],
                    "dialogs": [{"image_id": 1, "dialog": [{"question": 3, "answer": 0}]}],
                }
            }
        )
    )
    with pytest.raises(DataError, match="dialog 1 round 1"):
        read_dialogs(bad)


def _png(path, i):
    Image.new("RGB", (30 + i, 24), ((50 * i) % 256, (90 * i) % 256, 200)).save(path)


def _oracle_query(model, pieces):
    """FROMAGe's eval script, written out: per caption `<s> caption` token embeddings, per
    image its captioning-mode visual embedding, [RET] last; the projected last hidden state."""
    tok, emb = model.tokenizer, model.lm.get_input_embeddings()
    parts = []
    for p in pieces:
        if isinstance(p, Image.Image):
            _, pooled = model.vision(model.image_transform(p)[None])
            parts.append(model.projector(pooled[:, None, :])[0])
        else:
            ids = [tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"]
            parts.append(emb(torch.tensor(ids)))
    parts.append(emb(torch.tensor([model.ret_token_id])))
    out = model.lm(inputs_embeds=torch.cat(parts)[None], output_hidden_states=True)
    vec = model.heads.text_proj(out.hidden_states[-1][0, -1])
    return (vec / vec.norm()).detach().numpy()


def test_vist_end_to_end_matches_the_script(tiny_bundle, tmp_path):
    bundle = tiny_bundle("fromage", retrieval_dim=16, ret_token="[RET]",
                         vision_feature="pooler_output", image_aspect="crop")  # fmt: skip
    model = bundle.model
    stories = {"s1": [(f"p{i}", f"a red circle {i}") for i in range(5)],
               "s2": [(f"p{i}", f"a green square {i}") for i in range(3, 8)],
               "s3": [("p0", "a cat"), ("gone", "a dog")]}  # fmt: skip
    path = sis_file(tmp_path / "val.story-in-sequence.json", stories)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(8):
        _png(folder / f"p{i}.jpg", i)
    (folder / "broken.png").write_bytes(b"not an image")
    rep = run_vist(VistOptions(stories_path=path, images_dir=folder, ks=KS), model_bundle=bundle)
    assert rep.details == {"stories": 3, "scored": 2, "candidates": 8, "skipped_missing_image": 1}
    # the oracle: the script's embeddings and -10000 rule, ranks counted by hand
    size = model.vision.image_size
    imgs = {f"p{i}": Image.open(folder / f"p{i}.jpg").convert("RGB").resize(size)
            for i in range(8)}  # fmt: skip
    with torch.no_grad():
        cand = model.encode_images(torch.stack([model.image_transform(imgs[f"p{i}"])
                                                for i in range(8)])).numpy()  # fmt: skip
        hits = {k: 0 for k in KS}
        for steps in list(stories.values())[:2]:
            ids = [p for p, _ in steps]
            pieces = []
            for j, (p, text) in enumerate(steps):
                pieces += [text] + ([imgs[p]] if j < 4 else [])
            scores = cand @ _oracle_query(model, pieces)
            for p in ids[:-1]:
                scores[int(p[1:])] -= 10000
            rank = 1 + int((scores > scores[int(ids[-1][1:])]).sum())
            for k in KS:
                hits[k] += rank <= k
    for k in KS:
        assert rep.value(f"recall@{k}") == pytest.approx(hits[k] / 2)


def test_visdial_end_to_end_and_cli(tiny_bundle, tmp_path):
    bundle = tiny_bundle("fromage", retrieval_dim=16, ret_token="[RET]")
    path = visdial_file(tmp_path / "visdial_1.0_val.json",
                        [(i, [("is it red", "yes"), (f"is it number {i}", "no")])
                         for i in range(1, 5)])  # fmt: skip
    folder = tmp_path / "VisualDialog_val2018"
    folder.mkdir()
    for i in range(1, 5):
        _png(folder / f"VisualDialog_val2018_{i:012d}.jpg", i)
    opts = VisdialOptions(dialogs_path=path, images_dir=folder, ks=(1, 4))
    rep = run_visdial(opts, model_bundle=bundle)
    assert rep.value("recall@4") == rep.value("t2i_recall@4") == 1.0  # 4 candidates
    assert rep.details == {"dialogs": 4}
    (folder / "VisualDialog_val2018_000000000004.jpg").unlink()
    with pytest.raises(DataError, match="VisualDialog_val2018_000000000004.jpg missing"):
        run_visdial(VisdialOptions(dialogs_path=path, images_dir=folder), model_bundle=bundle)
    # the CLI: a malformed file is a clear error, exit code 2, before any model is loaded
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": {}}))
    res = CliRunner().invoke(main, ["eval", "visdial", "--checkpoint", str(tmp_path),
                                    "--dialogs", str(bad), "--images", str(folder)])  # fmt: skip
    assert res.exit_code == 2 and "not a VisDial 1.0 file" in res.output, res.output
    res = CliRunner().invoke(main, ["eval", "vist", "--checkpoint", str(tmp_path),
                                    "--stories", str(bad), "--images", str(folder)])  # fmt: skip
    assert res.exit_code == 2 and "not a VIST story-in-sequence file" in res.output, res.output
