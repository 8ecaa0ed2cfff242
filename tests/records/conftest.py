"""Files in the published shapes of four data sets where many records share one image.

Each builder writes the annotation files and the images they name, and returns a `Case`:
the inputs for `read_source`, the image folder, and what a correct pipeline must give
(every record kept, each distinct image stored once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.shards.conftest import image_bytes


@dataclass
class Case:
    source: str
    inputs: list[Path]
    images: Path
    records: int  # records that must reach the shards
    image_files: dict[str, bytes] = field(default_factory=dict)  # distinct images (rel -> bytes)
    options: dict = field(default_factory=dict)  # read_source options


def _image(root: Path, rel: str, seed: int, files: dict[str, bytes]) -> None:
    data = image_bytes(seed, (40 + seed % 7, 32))
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    files[rel] = data


def _chat(question: str, answer: str, first: bool = True) -> list[dict]:
    q = f"<image>\n{question}" if first else question
    return [{"from": "human", "value": q}, {"from": "gpt", "value": answer}]


def llava_instruct_150k(tmp: Path) -> Case:
    """LLaVA-Instruct-150K (liuhaotian/LLaVA-Instruct-150K, `llava_instruct_150k.json`): a JSON
    list of {id, image, conversations}; `id` is the COCO image id and `image` the file name in
    coco/train2017, so the conversation, detail and reasoning records of one image repeat it
    (~158k records over ~118k images)."""
    root, files = tmp / "train2017", {}
    records = []
    for i, n in enumerate([3, 1, 2, 4]):  # records per image
        image_id = f"{33471 + i:012d}"
        _image(root, f"{image_id}.jpg", i, files)
        for j in range(n):
            records.append(
                {
                    "id": image_id,
                    "image": f"{image_id}.jpg",
                    "conversations": _chat(f"What is in picture {i}, take {j}?", f"Thing {i}.{j}.")
                    + [{"from": "human", "value": "And then?"}, {"from": "gpt", "value": "Done."}],
                }
            )
    path = tmp / "llava_instruct_150k.json"
    path.write_text(json.dumps(records, indent=1))
    return Case("llava", [path], root, len(records), files)


def llava_mix665k(tmp: Path) -> Case:
    """LLaVA-1.5's `llava_v1_5_mix665k.json`: LLaVA-Instruct, VQAv2, OK-VQA, A-OKVQA and RefCOCO
    records name the same `coco/train2017/*.jpg` files (ids repeat across them), plus GQA,
    OCR-VQA (`ocr_vqa/images/*.jpg`), TextVQA and VG records, and text-only ShareGPT records
    (no `image`, a `model` field) that go to the text_only table."""
    root, files = tmp / "llava_images", {}
    coco = [f"coco/train2017/{33471 + i:012d}.jpg" for i in range(3)]
    for i, rel in enumerate(coco):
        _image(root, rel, 10 + i, files)
    _image(root, "gqa/images/2354786.jpg", 20, files)
    _image(root, "ocr_vqa/images/140031996.jpg", 21, files)
    _image(root, "textvqa/train_images/0054c91397f2fe05.jpg", 22, files)
    _image(root, "vg/VG_100K/2.jpg", 23, files)
    records = []
    for i, rel in enumerate(coco):  # llava-instruct, VQAv2, OK-VQA, A-OKVQA, RefCOCO
        image_id = rel.rsplit("/", 1)[1][:-4]
        records.append({"id": image_id, "image": rel, "conversations": _chat("Describe.", "A.")})
        vqa = _chat("What colour? Answer the question using a single word or phrase.", "Red")
        records.append({"id": image_id, "image": rel, "conversations": vqa})
        records.append({"id": f"{i}_okvqa", "image": rel, "conversations": _chat("Why?", "B")})
        ref = _chat("Please provide the bounding box coordinate of the region: a dog.", "[0.1]")
        records.append({"id": image_id, "image": rel, "conversations": ref})
    records.append(
        {"id": "2354786", "image": "gqa/images/2354786.jpg", "conversations": _chat("Q?", "a")}
    )
    records.append(
        {"id": "140031996", "image": "ocr_vqa/images/140031996.jpg",
         "conversations": _chat("Who wrote this book?", "Ann") + _chat("Genre?", "Art", False)}
    )  # fmt: skip
    records.append(
        {"id": "0054c91397f2fe05", "image": "textvqa/train_images/0054c91397f2fe05.jpg",
         "conversations": _chat("What does the sign say?", "stop")}
    )  # fmt: skip
    records.append({"id": "2", "image": "vg/VG_100K/2.jpg", "conversations": _chat("Box?", "[1]")})
    records.append(
        {"id": "i6IyJda_0", "model": "", "conversations": [
            {"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]}
    )  # fmt: skip
    path = tmp / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps(records, indent=1))
    return Case("llava", [path], root, len(records) - 1, files)  # one is text-only


def vqav2(tmp: Path) -> Case:
    """VQAv2's pair (visualqa.org): `v2_OpenEnded_mscoco_train2014_questions.json` =
    {info, task_type, data_type, license, data_subtype, questions: [{image_id, question,
    question_id}]} and `v2_mscoco_train2014_annotations.json` = {info, license, data_subtype,
    data_type, annotations: [{question_type, multiple_choice_answer, answers: 10 x {answer,
    answer_confidence, answer_id}, image_id, answer_type, question_id}]}; ~5.4 questions per
    COCO image, images as train2014/COCO_train2014_{id:012d}.jpg."""
    root, files = tmp / "coco", {}
    questions, annotations = [], []
    for i, image_id in enumerate([9, 25, 30]):
        _image(root, f"train2014/COCO_train2014_{image_id:012d}.jpg", 30 + i, files)
        for j in range(3 + i):
            qid = image_id * 1000 + j
            questions.append({"image_id": image_id, "question": f"Is {j} here?",
                              "question_id": qid})  # fmt: skip
            answers = [{"answer": "yes" if a < 8 else "no", "answer_confidence": "yes",
                        "answer_id": a + 1} for a in range(10)]  # fmt: skip
            annotations.append({"question_type": "is", "multiple_choice_answer": "yes",
                                "answers": answers, "image_id": image_id,
                                "answer_type": "yes/no", "question_id": qid})  # fmt: skip
    q = tmp / "v2_OpenEnded_mscoco_train2014_questions.json"
    q.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
                             "license": {}, "data_subtype": "train2014",
                             "questions": questions}))  # fmt: skip
    a = tmp / "v2_mscoco_train2014_annotations.json"
    a.write_text(json.dumps({"info": {}, "license": {}, "data_subtype": "train2014",
                             "annotations": annotations, "data_type": "mscoco"}))  # fmt: skip
    return Case("vqav2", [q, a], root, len(questions), files)


def oven_pair(tmp: Path) -> Case:
    """OVEN (open-vision-language/oven): `oven_entity_train.jsonl` and `oven_query_train.jsonl`,
    lines {data_id, image_id, question, entity_id, entity_text, data_split}; images at
    `{image_id[5:7]}/{image_id}.jpg`, some only as `.JPEG` (AutoVER tries both). Entity and
    query records name the same images; the manifest is written WITHOUT --images, so the
    `.JPEG` files are found at shard time."""
    root, files = tmp / "oven_images", {}
    ids = [f"oven_{n:08d}" for n in (5, 1_000_002, 2_030_000)]
    for i, image_id in enumerate(ids):
        ext = "JPEG" if i == 1 else "jpg"
        _image(root, f"{image_id[5:7]}/{image_id}.{ext}", 40 + i, files)
    entity, query = [], []
    for i, image_id in enumerate(ids):
        for j in range(2):
            entity.append({"data_id": f"oven_entity_train_{2 * i + j:08d}", "image_id": image_id,
                           "question": "what is this building?", "entity_id": f"Q{100 + i}",
                           "entity_text": f"Entity {i}", "data_split": "entity_train"})  # fmt: skip
        query.append({"data_id": f"oven_query_train_{i:08d}", "image_id": image_id,
                      "question": "who designed it?", "entity_id": f"Q{200 + i}",
                      "entity_text": f"Architect {i}", "data_split": "query_train"})  # fmt: skip
    e, q = tmp / "oven_entity_train.jsonl", tmp / "oven_query_train.jsonl"
    e.write_text("".join(json.dumps(r) + "\n" for r in entity))
    q.write_text("".join(json.dumps(r) + "\n" for r in query))
    return Case("oven", [e, q], root, len(entity) + len(query), files)


CASES = {
    "llava_instruct_150k": llava_instruct_150k,
    "llava_mix665k": llava_mix665k,
    "vqav2": vqav2,
    "oven": oven_pair,
}
