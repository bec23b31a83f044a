"""Prompt layouts and their token streams, written out token by token."""

from __future__ import annotations

import numpy as np
import pytest

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.plugin_manager import get_registries
from cm3leon.decoding.prompts import EDIT_PREFIX, Hole, Prompt, PromptEncoder
from cm3leon.decoding.tasks import prompt_from_task
from tests.decoding._helpers import colour_image, setup

VOCAB, DT = setup()
ENC = PromptEncoder(DT)
EOS, BRK = VOCAB.eos_id, VOCAB.break_id
M, F = VOCAB.mask_id, VOCAB.infill_id
RED = colour_image((255, 0, 0))
GREEN = colour_image((0, 255, 0))
ALL = ("cond", "no_text", "no_image", "uncond")


def t(text: str) -> list[int]:
    return (VOCAB.text_offset + np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)).tolist()


def codes(image) -> list[int]:
    return (VOCAB.image_offset + DT.image_tokenizer.encode([image])[0].numpy()).tolist()


def streams(prompt: Prompt, names=ALL, **kw) -> dict[str, list[int]]:
    enc = ENC.encode(prompt, names, **kw)
    return {k: v.tolist() for k, v in enc.streams.items()}


def test_text_to_image_is_eos_caption_break_and_uncond_is_a_mask() -> None:
    enc = ENC.encode(Prompt.text_to_image("a red cube"), ALL)
    s = {k: v.tolist() for k, v in enc.streams.items()}
    assert s["cond"] == s["no_image"] == [EOS, *t("a red cube"), BRK]
    assert s["uncond"] == s["no_text"] == [EOS, M(0), BRK]  # eq. 1
    assert enc.span.kind == "image" and enc.span.max_new_tokens == 9 and enc.span.suffix == (BRK,)


def test_image_to_text_is_section_2_2s_infill_prompt() -> None:
    img = codes(RED)
    # "<eos> <mask:0> <break> [image] <break> <infill:0>" (issue example / §2.2)
    s = streams(Prompt.image_to_text(RED))
    assert s["cond"] == [EOS, M(0), BRK, *img, BRK, F(0)]
    assert s["uncond"] == s["no_image"] == [EOS, M(0), BRK, M(1), BRK, F(0)]
    # "Image of <mask>: [image] <infill>"
    s = streams(Prompt.image_to_text(RED, prefix="Image of ", suffix=":"))
    assert s["cond"] == [EOS, *t("Image of "), M(0), *t(":"), BRK, *img, BRK, F(0)]
    assert s["no_text"] == s["cond"]  # the text around the hole is the output's template
    enc = ENC.encode(Prompt.image_to_text(RED, prefix="Q: colour? A:", layout="continuation"), ["cond"])
    assert enc.streams["cond"].tolist() == [EOS, BRK, *img, BRK, *t("Q: colour? A:")]
    assert enc.span.kind == "text" and enc.span.stop_ids[:2] == (BRK, EOS)


def test_text_infill_and_two_text_segments() -> None:
    s = streams(Prompt.text_infill("a ", " cube", max_new_tokens=5), ["cond"])
    assert s["cond"] == [EOS, *t("a "), M(0), *t(" cube"), F(0)]
    p = Prompt((TextSegment("one"), TextSegment("two"), Hole("image")))
    assert streams(p)["cond"] == [EOS, *t("one"), BRK, *t("two"), BRK]
    assert streams(p)["uncond"] == [EOS, M(0), BRK, M(1), BRK]
    assert ENC.encode(Prompt.text_infill("a", "", max_new_tokens=5), ["cond"]).span.max_new_tokens == 5


def test_image_infill_masks_a_raster_range() -> None:
    img = codes(GREEN)
    enc = ENC.encode(Prompt.image_infill(GREEN, 2, 5, caption="green"), ALL)
    assert enc.streams["cond"].tolist() == [EOS, *t("green"), BRK, *img[:2], M(0), *img[5:], BRK, F(0)]
    assert enc.streams["uncond"].tolist() == [EOS, M(1), BRK, *img[:2], M(0), *img[5:], BRK, F(0)]
    assert (enc.span.max_new_tokens, enc.span.suffix, enc.start, enc.end) == (3, (), 2, 5)
    whole = ENC.encode(Prompt((TextSegment("x"), Hole("image"), TextSegment("y"))), ["cond"])
    assert whole.streams["cond"].tolist() == [EOS, *t("x"), BRK, M(0), BRK, *t("y"), F(0)]
    assert whole.span.max_new_tokens == 9 and whole.span.suffix == ()


def test_edit_streams_for_dual_guidance() -> None:
    img = codes(RED)
    s = streams(Prompt.edit(RED, "make it blue"))
    head = [EOS, *t(EDIT_PREFIX), BRK]
    assert s["cond"] == [*head, *img, BRK, *t("make it blue"), BRK]
    assert s["no_text"] == [*head, *img, BRK, M(0), BRK]  # image kept, instruction masked
    assert s["no_image"] == [*head, M(0), BRK, *t("make it blue"), BRK]
    assert s["uncond"] == [*head, M(0), BRK, M(1), BRK]  # the task prefix is fixed


def test_retrieved_documents_follow_figure_9() -> None:
    bank = (Document.of("a red thing", RED, id="r1"), Document.of("plain text", id="r2"))
    prompt = Prompt.text_to_image("a red cube", retrieved=bank)
    s = streams(prompt)
    example = DT.encode_example(Document.of("a red cube"), list(bank)).tolist()
    assert s["cond"] == [*example, BRK]
    assert s["cond"][:2] == [EOS, *t("a")] and codes(RED)[0] in s["cond"]
    assert s["uncond"] == DT.encode_example(Document.of("x"), list(bank)).tolist()[:-1] + [M(0), BRK]
    assert streams(prompt, retrieved_in_uncond=False)["uncond"] == [EOS, M(0), BRK]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Prompt((TextSegment("x"),)), "needs exactly one Hole"),
        (lambda: Prompt((Hole("text"), Hole("image"))), "found 2"),
        (lambda: Prompt((TextSegment("x"), Hole("image")), fixed={1}), r"fixed indices \[1\]"),
        (lambda: Hole("text", image=ImageSegment(codes=(1,))), "only an image hole"),
        (lambda: Prompt.image_to_text(RED, layout="sideways"), "layout must be"),
    ],
)
def test_bad_prompts(build, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_bad_encodings_name_the_prompt_and_empty_prompts() -> None:
    with pytest.raises(ValueError, match=r"prompt 'p': image infill range \[4, 12\) is not inside the image's 9 codes"):
        ENC.encode(Prompt.image_infill(RED, 4, 12, id="p"), ["cond"])
    with pytest.raises(ValueError, match="unknown stream"):
        ENC.encode(Prompt.text_to_image("x"), ["cond", "negative"])
    # unconditional generation: <eos> <break> -> image, <eos> -> text
    assert ENC.encode(Prompt((Hole("image"),)), ["cond"]).streams["cond"].tolist() == [EOS, BRK]
    assert ENC.encode(Prompt((Hole("text"),)), ["uncond"]).streams["uncond"].tolist() == [EOS]
    after = Prompt((Hole("text"),), retrieved=(Document.of("doc"),))
    assert ENC.encode(after, ["cond"]).streams["cond"].tolist() == [EOS, *t("doc"), BRK]
    many = Prompt((*(TextSegment(str(i)) for i in range(VOCAB.num_sentinels + 1)), Hole("image")), id="many")
    with pytest.raises(ValueError, match="more masked segments than the 4 CM3 sentinels"):
        ENC.encode(many, ["uncond"])
    with pytest.raises(ValueError, match=r"prompt 'bad', segment 0: .*codes"):
        ENC.encode(Prompt((ImageSegment(codes=(1, 2)), Hole("text")), id="bad"), ["cond"])


# ------------------------------------------------------------------ tasks
def _task(name: str):
    return get_registries().tasks.build(name)


def test_vqa_task_prompt_infills_the_answer() -> None:
    record = {"id": "q1", "question": "What colour is it?", "image": RED}
    for seed in range(3):  # every template
        prompt = prompt_from_task(_task("vqa2"), record, output="answer", modality="text",
                                  rng=np.random.default_rng(seed))  # fmt: skip
        cond = ENC.encode(prompt, ["cond"]).streams["cond"].tolist()
        assert cond[-len(codes(RED)) - 3:] == [BRK, *codes(RED), BRK, F(0)]
        assert cond.count(M(0)) == 1 and cond[:4] == [EOS, *t("Que")]
        assert prompt.id == "vqa2/q1" and prompt.meta["task"] == "vqa2" and "answer" not in prompt.meta


def test_text_hole_keeps_the_templates_closing_punctuation_after_the_mask() -> None:
    record = {"id": "q1", "question": "What colour is it?", "image": RED}
    for seed in range(3):
        prompt = prompt_from_task(_task("vqa2"), record, output="answer", modality="text",
                                  rng=np.random.default_rng(seed))  # fmt: skip
        hole = next(i for i, seg in enumerate(prompt.segments) if isinstance(seg, Hole))
        before = prompt.segments[hole - 1]
        assert isinstance(before, TextSegment) and not before.text.endswith(" ")  # " blue" carries it
        after = prompt.segments[hole + 1]
        template = _task("vqa2").templates[prompt.meta["template"]]
        if "{answer}." in template:  # "... is<mask:0>. <break>": the "." stays, as in training
            assert after == TextSegment(".") and isinstance(prompt.segments[hole + 2], ImageSegment)
        else:
            assert isinstance(after, ImageSegment)


def _without(record: dict, output: str) -> dict:
    return {k: v for k, v in record.items() if k != output}


# Task -> (output field, modality): the tasks whose output is a record field that the rest of
# the rendering does not depend on (ScienceQA's answer is an index into the choices; the
# ControlNet-style conditions are extracted from the output image).
_OUTPUTS = {"vqa2": ("answer", "text"), "okvqa": ("answer", "text"), "vizwiz": ("answer", "text"),
            "coco_captioning": ("caption", "text"), "flickr30k": ("caption", "text"),
            "image_paragraph": ("caption", "text"), "localized_narratives": ("caption", "text"),
            "instructpix2pix": ("edited_image", "image"), "ocr": ("image", "image")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_OUTPUTS))
def test_task_prompts_end_exactly_where_the_masked_target_starts(name: str) -> None:
    """The prompt is the SFT example with its target masked (CM3Config.target_prob), up to the
    point where the output is generated: <infill:0> for an infill, the target's start for a
    continuation.  The generated tokens are then exactly the target's tokens."""
    from cm3leon.core.objective import CM3Config, cm3_transform

    task = _task(name)
    output, modality = _OUTPUTS[name]
    record = task.example(np.random.default_rng(0))
    for seed in range(len(task.templates) * 3):
        doc = task.render(record, rng=np.random.default_rng(seed))
        example = DT.encode_example_with_targets(doc)
        (start, end), = example.targets.tolist()
        prompt = prompt_from_task(task, _without(record, output), output=output, modality=modality,
                                  rng=np.random.default_rng(seed))  # fmt: skip
        cond = ENC.encode(prompt, ["cond"]).streams["cond"].tolist()
        if prompt.is_infill:
            masked = cm3_transform(example.ids, VOCAB, CM3Config(target_prob=1.0), np.random.default_rng(0),
                                   targets=example.targets).tokens.tolist()  # fmt: skip
            assert cond == masked[: masked.index(F(0)) + 1]
            assert masked[masked.index(F(0)) + 1 :] == example.ids[start:end].tolist()
        else:
            assert cond == example.ids[:start].tolist()


def test_caption_and_edit_task_prompts() -> None:
    cap = prompt_from_task(_task("coco_captioning"), {"id": "c", "image": GREEN}, output="caption",
                           modality="text", rng=np.random.default_rng(1))  # fmt: skip
    assert ENC.encode(cap, ["cond"]).streams["cond"].tolist()[-len(codes(GREEN)) - 4:] == [
        M(0), BRK, *codes(GREEN), BRK, F(0)]  # fmt: skip
    edit = prompt_from_task(_task("instructpix2pix"), {"id": "e", "image": RED, "instruction": "make it blue"},
                            output="edited_image", modality="image")  # fmt: skip
    assert edit.output == "image" and not edit.is_infill and edit.fixed == frozenset({0})
    s = streams(edit, ["cond", "no_text", "uncond"])
    prefix = edit.segments[0].text
    assert s["uncond"] == [EOS, *t(prefix), BRK, M(0), BRK, M(1), BRK]
    assert s["no_text"] == [EOS, *t(prefix), BRK, *codes(RED), BRK, M(0), BRK]
    with pytest.raises(ValueError, match="rendered the output field 'solution' 0 times"):
        prompt_from_task(_task("instructpix2pix"), {"id": "e", "image": RED, "instruction": "x", "edited_image": RED},
                         output="solution", modality="image")  # fmt: skip
