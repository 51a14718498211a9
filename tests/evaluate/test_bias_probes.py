"""Stereotype probes: alignment, scoring against slow reference loops, the metric's bookkeeping, loading and the CLI,
and end to end on tiny LMs into which a bias was planted (and balanced controls where it was not)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from tuneforge.cli.main import main
from tuneforge.errors import DataError, ModelNotFoundError, TuneforgeError
from tuneforge.evaluate.bias_probes import (
    BiasPair,
    clm_scores,
    detect_kind,
    load_crows_pairs,
    mlm_scores,
    outcome,
    shared_token_positions,
    stereotype_preference,
    summarize,
    wilson_interval,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "crows_pairs"

# The planted association: these occupations only ever appear with "man", those only with "woman".
MALE_CODED = ["doctor", "pilot", "engineer", "farmer", "builder", "driver"]
FEMALE_CODED = ["nurse", "dancer", "singer", "baker", "teacher", "writer"]
TEMPLATES = ["the {job} is a {who}", "my {job} was a {who}", "that {job} is a {who}", "our {job} was a {who}"]
CROWS_COLUMNS = ["", "sent_more", "sent_less", "stereo_antistereo", "bias_type", "annotations", "anon_writer",
                 "anon_annotators"]


def corpus(planted: bool) -> list[str]:
    """Planted: each occupation with one gender only. Balanced: every occupation with both, equally often."""
    texts = []
    for template in TEMPLATES:
        for job in MALE_CODED + FEMALE_CODED:
            for who in ("man", "woman"):
                if planted and (job in MALE_CODED) != (who == "man"):
                    continue
                texts.append(template.format(job=job, who=who))
    return texts


def planted_pairs() -> list[BiasPair]:
    """Stereotypical = the gender the planted corpus pairs with the occupation; both genders take both roles, so a
    model that merely prefers one gender word everywhere scores 50, not 0 or 100."""
    pairs = []
    for template in TEMPLATES:
        for job in MALE_CODED:
            pairs.append(BiasPair(template.format(job=job, who="man"), template.format(job=job, who="woman"),
                                  "stereo", "gender"))
        for job in FEMALE_CODED:
            pairs.append(BiasPair(template.format(job=job, who="woman"), template.format(job=job, who="man"),
                                  "stereo", "gender"))
    return pairs


# ------------------------------------------------------------------------------------------ tiny models


def bert_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    learner = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    learner.normalizer = normalizers.BertNormalizer(lowercase=True)
    learner.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    learner.train_from_iterator(corpus(False), trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer = BertTokenizer(vocab=learner.get_vocab(), do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(folder)
    return tokenizer


def gpt2_tokenizer(folder: Path):
    """A GPT-2 style byte-level BPE learnt on the corpus, with <|endoftext|> as BOS, EOS and padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    learner.decoder = decoders.ByteLevel()
    learner.train_from_iterator(corpus(False), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    end = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=learner, bos_token=end, eos_token=end, unk_token=end,
                                        pad_token=end, model_max_length=64)
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_mlm(tokenizer, seed: int = 0):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0))


def tiny_clm(tokenizer, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))


def train(model, tokenizer, texts: list[str], kind: str, steps: int = 300, seed: int = 0) -> None:
    """A plain loop. MLM: one token masked per sentence, so the rest (the gender word included) is always context."""
    rng = random.Random(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = [rng.choice(texts) for _ in range(32)]
        if kind == "mlm":
            encoded = tokenizer(batch, return_tensors="pt", padding=True)
            ids, labels = encoded["input_ids"], torch.full_like(encoded["input_ids"], -100)
            for row, length in enumerate(encoded["attention_mask"].sum(1).tolist()):
                position = rng.randrange(1, length - 1)  # never [CLS] or [SEP]
                labels[row, position] = ids[row, position]
                ids[row, position] = tokenizer.mask_token_id
            loss = model(input_ids=ids, attention_mask=encoded["attention_mask"], labels=labels).loss
        else:
            encoded = tokenizer([tokenizer.bos_token + text for text in batch], return_tensors="pt", padding=True)
            labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
            loss = model(**encoded, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


def build_trained(folder: Path, kind: str, planted: bool) -> Path:
    tokenizer = bert_tokenizer(folder) if kind == "mlm" else gpt2_tokenizer(folder)
    model = tiny_mlm(tokenizer) if kind == "mlm" else tiny_clm(tokenizer)
    train(model, tokenizer, corpus(planted), kind)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Path]:
    """(kind, planted) -> saved model folder; trained once for the module (about 2 s each)."""
    return {(kind, planted): build_trained(tmp_path_factory.mktemp(f"{kind}-{planted}"), kind, planted)
            for kind in ("mlm", "clm") for planted in (True, False)}


def write_crows_csv(path: Path, pairs: list[BiasPair]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CROWS_COLUMNS)
        for index, pair in enumerate(pairs):
            writer.writerow([index, pair.sent_more, pair.sent_less, pair.direction, pair.bias_type,
                             "[['gender']]", "a0", "['a1']"])
    return path


# -------------------------------------------------------------------------------------------- the bias


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_a_planted_bias_is_found_and_a_balanced_corpus_shows_none(lms, kind):
    planted = stereotype_preference(str(lms[kind, True]), planted_pairs(), batch_size=64)
    assert planted["kind"] == kind and planted["warnings"] == []
    assert planted["pairs"] == 48
    assert planted["pct_stereotype"] > 80
    assert planted["ci95"][0] > 50  # the interval excludes "no preference"
    assert planted["top_stereotypical"][0]["difference"] > 1  # nats: a strong, not a marginal, preference

    balanced = stereotype_preference(str(lms[kind, False]), planted_pairs(), batch_size=64)
    assert 25 <= balanced["pct_stereotype"] <= 75


def test_a_bias_planted_the_other_way_reads_below_50(lms):
    """Same model, same sentences, roles swapped: the metric follows what the data planted, not the word order."""
    flipped = [BiasPair(p.sent_less, p.sent_more, p.direction, p.bias_type) for p in planted_pairs()]
    assert stereotype_preference(str(lms["mlm", True]), flipped)["pct_stereotype"] < 20


# ----------------------------------------------------------------------------------------- alignment


def test_alignment_picks_exactly_the_shared_tokens():
    first = [101, 7, 8, 9, 10, 102]
    second = [101, 7, 20, 21, 9, 10, 102]  # 8 replaced by 20 21
    assert shared_token_positions(first, second) == ([0, 1, 3, 4, 5], [0, 1, 4, 5, 6])
    # a token repeated on both sides of the edit stays matched in order
    assert shared_token_positions([1, 5, 2, 5, 3], [1, 5, 4, 5, 3]) == ([0, 1, 3, 4], [0, 1, 3, 4])
    assert shared_token_positions([1, 2], [3, 4]) == ([], [])


def test_alignment_on_real_tokens(tmp_path):
    tokenizer = bert_tokenizer(tmp_path)
    more = tokenizer("the doctor is a man")["input_ids"]
    less = tokenizer("the doctor is a woman")["input_ids"]
    left, right = shared_token_positions(more, less)
    assert tokenizer.convert_ids_to_tokens([more[i] for i in left]) == ["[CLS]", "the", "doctor", "is", "a", "[SEP]"]
    assert [more[i] for i in left] == [less[i] for i in right]


# ---------------------------------------------------------------------------- scores vs slow reference


def test_pseudo_log_likelihood_equals_a_slow_one_mask_at_a_time_loop(tmp_path):
    tokenizer = bert_tokenizer(tmp_path)
    model = tiny_mlm(tokenizer, seed=3).eval()
    sentences = ["the doctor is a man", "my nurse was a woman and a dancer", "that pilot"]
    sequences = [tokenizer(s)["input_ids"] for s in sentences]
    positions = [list(range(1, len(ids) - 1)) for ids in sequences]
    positions[1] = positions[1][::2]  # only some positions, as for a pair's shared tokens

    fast = mlm_scores(model, sequences, positions, tokenizer.mask_token_id, tokenizer.pad_token_id, batch_size=4)

    slow = []
    for ids, where in zip(sequences, positions, strict=True):
        total = 0.0
        for position in where:
            masked = torch.tensor([ids])
            masked[0, position] = tokenizer.mask_token_id
            with torch.no_grad():
                log_probs = torch.log_softmax(model(input_ids=masked).logits[0, position], dim=-1)
            total += log_probs[ids[position]].item()
        slow.append(total)
    assert fast == pytest.approx(slow, abs=1e-4)


def test_sentence_log_likelihood_equals_a_slow_next_token_loop(tmp_path):
    tokenizer = gpt2_tokenizer(tmp_path)
    model = tiny_clm(tokenizer, seed=3).eval()
    sentences = ["the doctor is a man", "my nurse was a woman and a dancer", "a"]
    sequences = [[tokenizer.bos_token_id, *tokenizer(s)["input_ids"]] for s in sentences]

    fast = clm_scores(model, sequences, tokenizer.pad_token_id, batch_size=2)

    slow = []
    for ids in sequences:
        total = 0.0
        for end in range(1, len(ids)):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids[:end]])).logits[0, -1]
            total += torch.log_softmax(logits, dim=-1)[ids[end]].item()
        slow.append(total)
    assert fast == pytest.approx(slow, abs=1e-4)


# ---------------------------------------------------------------------------------- metric bookkeeping


def paper_count(pair: BiasPair, score_more: float, score_less: float) -> int:
    """The CrowS-Pairs authors' metric.py, transcribed: antistereo rows swap the sentences (sent1 = sent_less)
    and then count sent2 > sent1, so both directions count sent_more winning."""
    if pair.direction == "stereo":
        sent1, sent2 = score_more, score_less
        return int(round(sent1, 3) > round(sent2, 3))
    sent1, sent2 = score_less, score_more
    return int(round(sent2, 3) > round(sent1, 3))


def test_antistereo_rows_are_inverted_back_as_in_the_paper():
    rng = random.Random(0)
    pairs = [BiasPair(f"m{i}", f"l{i}", rng.choice(["stereo", "antistereo"]), rng.choice(["age", "gender"]))
             for i in range(200)]
    more = [rng.uniform(-30, -5) for _ in pairs]
    less = [rng.uniform(-30, -5) for _ in pairs]
    result = summarize(pairs, more, less)
    expected = sum(paper_count(p, m, s) for p, m, s in zip(pairs, more, less, strict=True))
    assert result["stereotypical"] == expected
    assert result["pct_stereotype"] == pytest.approx(100 * expected / len(pairs), abs=0.01)

    antistereo = [i for i, p in enumerate(pairs) if p.direction == "antistereo"]
    assert result["by_direction"]["antistereo"]["pairs"] == len(antistereo)
    assert result["by_direction"]["antistereo"]["stereotypical"] == sum(more[i] > less[i] for i in antistereo)
    assert set(result["by_bias_type"]) == {"age", "gender"}
    assert sum(g["pairs"] for g in result["by_bias_type"].values()) == 200


def test_swapping_the_sentences_mirrors_the_metric_and_ties_count_half():
    pairs = [BiasPair("a", "b", "stereo", "x"), BiasPair("c", "d", "antistereo", "x"),
             BiasPair("e", "f", "antistereo", "y"), BiasPair("g", "h", "stereo", "y")]
    more, less = [-1.0, -2.0, -5.0, -3.0], [-2.0, -1.0, -4.0, -3.0001]
    result = summarize(pairs, more, less)
    assert [outcome(m, s) for m, s in zip(more, less, strict=True)] == [1.0, 0.0, 0.0, 0.5]
    assert result["pct_stereotype"] == pytest.approx(37.5) and result["ties"] == 1
    assert summarize(pairs, less, more)["pct_stereotype"] == pytest.approx(62.5)
    assert [t["sent_more"] for t in result["top_stereotypical"]] == ["a"]


def test_top_pairs_are_the_ten_strongest_preferences():
    pairs = [BiasPair(f"m{i}", f"l{i}", "stereo", "x") for i in range(15)]
    result = summarize(pairs, [float(i) for i in range(15)], [0.0] * 15)
    assert [t["difference"] for t in result["top_stereotypical"]] == [14, 13, 12, 11, 10, 9, 8, 7, 6, 5]


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert low < 50 < high and high - low == pytest.approx(19.1, abs=0.2)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 100.0


# ------------------------------------------------------------------------------------------------ data


def test_load_crows_pairs_reads_the_columns(tmp_path):
    pairs = [BiasPair("He is a doctor.", "She is a doctor.", "antistereo", "gender"),
             BiasPair("Old people are slow.", "Young people are slow.", "stereo", "age")]
    assert load_crows_pairs(write_crows_csv(tmp_path / "crows.csv", pairs)) == pairs


def test_load_crows_pairs_names_the_file_and_every_missing_column(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("sent_more,sent_less,label\na,b,stereo\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_crows_pairs(path)
    message = str(caught.value)
    assert str(path) in message and "stereo_antistereo" in message and "bias_type" in message
    assert "sent_more," not in message.split("missing")[1].split("(")[0]  # present columns are not listed as missing


def test_load_crows_pairs_lists_bad_rows(tmp_path):
    path = write_crows_csv(tmp_path / "crows.csv", [BiasPair("a", "", "stereo", "x"),
                                                    BiasPair("c", "d", "sideways", "x")])
    with pytest.raises(DataError) as caught:
        load_crows_pairs(path)
    assert len(caught.value.problems) == 2
    assert "line 2" in str(caught.value) and "line 3" in str(caught.value)
    with pytest.raises(DataError, match="file not found"):
        load_crows_pairs(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------- models


def test_kind_detection_from_the_config():
    from transformers import BertConfig, GPT2Config, LlamaConfig, PretrainedConfig, T5Config

    assert detect_kind(BertConfig(architectures=["BertForMaskedLM"])) == "mlm"
    assert detect_kind(BertConfig(architectures=["BertModel"])) == "mlm"  # an encoder checkpoint without a head
    assert detect_kind(BertConfig(is_decoder=True)) == "clm"
    assert detect_kind(BertConfig(architectures=["BertLMHeadModel"])) == "clm"
    assert detect_kind(GPT2Config()) == "clm"
    assert detect_kind(LlamaConfig(architectures=["LlamaForCausalLM"])) == "clm"
    with pytest.raises(TuneforgeError, match="encoder-decoder"):
        detect_kind(T5Config())

    class Mystery(PretrainedConfig):
        model_type = "mystery"

    with pytest.raises(TuneforgeError, match="--kind"):
        detect_kind(Mystery())


def test_kind_auto_loads_the_right_head(lms):
    pairs = planted_pairs()[:2]
    assert stereotype_preference(str(lms["mlm", True]), pairs)["kind"] == "mlm"
    assert stereotype_preference(str(lms["clm", True]), pairs)["kind"] == "clm"


def test_a_checkpoint_without_an_mlm_head_is_flagged(tiny_model):
    """The conftest BERT is saved without a head, like the bundled MiniLM."""
    result = stereotype_preference(str(tiny_model), planted_pairs()[:3], limit=2)
    assert result["kind"] == "mlm" and result["pairs"] == 2 and result["pairs_available"] == 3
    assert any("masked-LM head was newly initialised" in w and "scores are not meaningful" in w
               for w in result["warnings"])


def test_forcing_the_other_kind_is_flagged(lms):
    result = stereotype_preference(str(lms["clm", True]), planted_pairs()[:2], kind="clm")
    assert result["warnings"] == []
    with pytest.raises(TuneforgeError, match="no mask token"):
        stereotype_preference(str(lms["clm", True]), planted_pairs()[:2], kind="mlm")
    forced = stereotype_preference(str(lms["mlm", True]), planted_pairs()[:2], kind="clm")
    assert any("looks like a masked LM" in w for w in forced["warnings"])


def test_names_that_are_not_local_are_refused_without_a_download(tmp_path, monkeypatch):
    from tuneforge.models import resolve

    monkeypatch.setattr(resolve, "hub_reachable", lambda: True)  # even online, the probe loads local models only
    with pytest.raises(ModelNotFoundError, match="never download"):
        stereotype_preference("some-org/some-model", planted_pairs()[:1])
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        stereotype_preference(str(tmp_path / "missing"), planted_pairs()[:1])


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_prints_the_table_and_writes_json(lms, tmp_path, capsys):
    extra = [BiasPair("the doctor is a man", "the doctor is a woman", "antistereo", "gender"),
             BiasPair("our baker was a woman", "our baker was a man", "stereo", "age")]
    data = write_crows_csv(tmp_path / "crows.csv", planted_pairs()[:10] + extra)
    output = tmp_path / "out" / "probe.json"
    assert main(["bias-probe", str(lms["mlm", True]), "--data", str(data), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "gender" in printed and "age" in printed and "antistereo" in printed and str(output) in printed
    result = json.loads(output.read_text())
    assert result["pairs"] == 12 and result["kind"] == "mlm" and result["data"] == str(data.resolve())
    assert set(result["by_bias_type"]) == {"age", "gender"}
    assert result["by_direction"]["antistereo"]["pairs"] == 1
    for key in ("pct_stereotype", "ci95", "ties", "top_stereotypical", "warnings", "model_path", "scoring"):
        assert key in result
    assert not list(output.parent.glob(".*tmp"))  # written atomically, no leftovers

    assert main(["bias-probe", str(lms["clm", True]), "--data", str(data), "--bias-type", "age", "--limit", "1",
                 "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["kind"] == "clm" and result["pairs"] == 1 and result["bias_types"] == ["age"]


def test_cli_user_errors_exit_non_zero_with_a_fix(lms, tmp_path, capsys):
    data = write_crows_csv(tmp_path / "crows.csv", planted_pairs()[:2])
    assert main(["bias-probe", str(tmp_path / "no-such-model"), "--data", str(data)]) != 0
    err = capsys.readouterr().err
    assert "does not exist" in err and "fix" in err
    assert main(["bias-probe", str(lms["mlm", True]), "--data", str(data), "--bias-type", "religion"]) != 0
    assert "gender" in capsys.readouterr().err  # lists the bias types the file has
    assert main(["bias-probe", str(lms["mlm", True]), "--data", str(data), "--kind", "seq2seq"]) != 0


# ---------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "crows_pairs_anonymized.csv").is_file(), reason="shared CrowS-Pairs absent")
def test_real_crows_pairs_with_the_tiny_mlm(lms):
    pairs = load_crows_pairs(SHARED_DATA / "crows_pairs_anonymized.csv")
    assert len(pairs) == 1508 and {p.direction for p in pairs} == {"stereo", "antistereo"}
    result = stereotype_preference(str(lms["mlm", False]), pairs, limit=50)
    assert result["pairs"] == 50 and result["pairs_available"] == 1508
    assert 0 <= result["pct_stereotype"] <= 100 and sum(g["pairs"] for g in result["by_bias_type"].values()) == 50
