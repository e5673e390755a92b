"""Task ``emotion``: the tweet cleaner, vocabulary, GloVe loader, packed sequences, bad CSV files
and a short sweep through the CLI, on the real tweet CSV files where data is involved."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from dlb_tune.tasks import DataError, TrialContext, Trials
from dlb_tune.tasks._text import build_vocab, clean_tweet, encode, load_glove, read_emotion_csv
from dlb_tune.tasks.emotion import CELLS, CLASSES, POOLINGS, Emotion, EmotionConfig, TweetRNN, read_splits

FILES = ("trainEmotions.csv", "testEmotions.csv")


@pytest.fixture(scope="module")
def emotions(data_dir) -> Path:
    folder = data_dir / "emotions"
    if not (folder / FILES[0]).exists():
        pytest.skip(f"no tweet-emotion data in {folder}")
    return folder


def real_rows(folder: Path, name: str = FILES[0]) -> list[list[str]]:
    with open(folder / name, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))  # row 0 is the header, so rows[n - 1] is line n


# ---------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize("line, expected", [
    (2, "victory for the bulldogs was celebrated by <number> white chocolate cheesecakes nom nom nom "
        "whatta <allcaps> fattyy <elong> <allcaps>"),
    (32, "for <user> ? <url>"),
    (61, "which is why i can not wait till i move out of home and life by myself next year "
         "wacky <allcaps> adventures <allcaps> every <allcaps> day <allcaps> ! <repeat>"),
    (75, "<user> <user> i care about eurovision ! and yes they have a <number> jury based vote this year "
         "<hashtag> eurovision2009"),
    (76, "because he <user> wants to be an honorary filipino i will follow him now <smile> thanks <user> !"),
    (354, "home sweet home <heart> going to see hannah montana the movie again <allcaps> today <heart> "
          "dd <elong> <allcaps>"),
])
def test_cleaner_on_real_tweets(emotions, line, expected):
    assert clean_tweet(real_rows(emotions)[line - 1][1]) == expected.split()


def test_cleaner_special_cases():
    assert clean_tweet("#HappyMothersDay :-( :P ;) won't it's john's sooooo hahahaha") == (
        "<hashtag> happy mothers day <sadface> <lolface> <smile> will not it is john soo <elong> haha".split())
    assert clean_tweet("   ") == []


# -------------------------------------------------------------------------- vocabulary


def test_vocabulary_comes_from_training_text_only(emotions):
    splits = read_splits(emotions, limit=None)
    tokens = {k: [clean_tweet(t) for t in texts] for k, (texts, _) in splits.items()}
    itos = build_vocab(tokens["train"], min_freq=2)
    train_counts = pd.Series([t for ts in tokens["train"] for t in ts]).value_counts()
    assert itos[:2] == ["<pad>", "<unk>"]
    assert all(train_counts.get(w, 0) >= 2 for w in itos[2:])
    held_out_only = {t for ts in tokens["val"] + tokens["test"] for t in ts} - set(train_counts.index)
    assert held_out_only, "val/test hold words the training part lacks"
    word = sorted(held_out_only)[0]
    ids, lengths = encode([["happy", word]], itos, max_len=64)
    assert ids.tolist() == [[itos.index("happy"), 1]] and lengths.tolist() == [2]
    # the val split is a stratified 10% of the training file, disjoint from the training part
    n_val, n_all = len(splits["val"][0]), len(splits["train"][0]) + len(splits["val"][0])
    assert n_val == pytest.approx(0.1 * n_all, abs=3)
    assert torch.bincount(splits["val"][1]).tolist() == pytest.approx(
        (torch.bincount(torch.cat([splits["train"][1], splits["val"][1]])) * 0.1).tolist(), abs=1)


def test_load_data_accepts_the_emotions_folder_itself(emotions):
    data = Emotion.load_data(emotions, EmotionConfig(), limit=90)
    assert {len(data[k]["y"]) for k in ("train", "val", "test")} == {90}
    assert torch.bincount(data["train"]["y"], minlength=3).min() >= 20  # stratified, not the sorted head
    glove = data["pretrained"]["glove"]  # found beside the emotions folder
    assert glove["matrix"].shape == (len(data["itos"]), 25) and 0.3 < glove["coverage"] < 1.0


# ------------------------------------------------------------------------------- GloVe

GLOVE_LINES = ["so 0.1 0.2 0.3", "happy 1 2 3", "sad -1 -2 -3.5e-1", "happy 9 9 9"]


@pytest.mark.parametrize("compressed", [False, True])
def test_glove_loader_reads_text_and_gzip(tmp_path, compressed):
    text = "\n".join(GLOVE_LINES) + "\n"
    path = tmp_path / ("g.txt.gz" if compressed else "g.txt")
    if compressed:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    itos = ["<pad>", "<unk>", "happy", "soo", "sad", "zebra"]
    matrix, found = load_glove(path, itos)
    assert matrix.shape == (6, 3)  # the dimension comes from the file
    assert found.tolist() == [False, False, True, True, True, False]
    assert matrix[2].tolist() == [1, 2, 3]  # the first occurrence wins
    assert matrix[3].tolist() == pytest.approx([0.1, 0.2, 0.3])  # "soo" falls back to "so"
    assert matrix[4].tolist() == pytest.approx([-1, -2, -0.35])


def test_glove_loader_rejects_a_malformed_line_with_its_number(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("so 0.1 0.2 0.3\nhappy 1 2 3\nsad 1 2\n")
    with pytest.raises(DataError, match=r"g\.txt:3: expected a word and 3 numbers, got 2"):
        load_glove(path, ["<pad>", "<unk>", "happy"])
    path.write_text("so 0.1 0.2 0.3\nhappy 1 x 3\n")
    with pytest.raises(DataError, match=r"g\.txt:2: .*not a number"):
        load_glove(path, ["<pad>", "<unk>", "happy"])


def test_glove_path_from_the_config_sets_the_embedding(tmp_path, emotions):
    path = tmp_path / "tiny.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("<user> 1 0 0\ni 0 1 0\nthe 0 0 1\n")
    data = Emotion.load_data(emotions, EmotionConfig(glove_path=str(path)), limit=60)
    glove = data["pretrained"]["glove"]
    assert glove["matrix"].shape[1] == 3 and int(glove["found"].sum()) == 3
    task = Emotion(EmotionConfig(glove_path=str(path), hidden_size=4), data, TrialContext(max_epochs=1, seed=0))
    assert task.net.embedding.weight.shape[1] == 3
    assert task.net.embedding.weight[data["itos"].index("<user>")].tolist() == [1, 0, 0]
    assert task.trial_metrics()["emb_coverage"] == pytest.approx(3 / (len(data["itos"]) - 2))
    with pytest.raises(DataError, match="GloVe file not found: .*nope.txt"):
        Emotion.load_data(emotions, EmotionConfig(glove_path=str(tmp_path / "nope.txt")), limit=60)


# ---------------------------------------------------------------------- the recurrent net


def padded_batch(generator: torch.Generator, lengths: list[int], vocab: int = 50) -> torch.Tensor:
    ids = torch.randint(2, vocab, (len(lengths), max(lengths)), generator=generator)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
    return ids


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_padded_batch_matches_each_sequence_alone(cell, bidirectional, pooling):
    torch.manual_seed(0)
    net = TweetRNN(50, 8, 3, cell, hidden_size=6, num_layers=2, bidirectional=bidirectional, dropout=0.3,
                   pooling=pooling).eval()
    g = torch.Generator().manual_seed(1)
    lengths = [5, 1, 9, 3]
    ids = padded_batch(g, lengths)
    batch = net(ids, torch.tensor(lengths))
    alone = torch.cat([net(ids[i : i + 1, :n], torch.tensor([n])) for i, n in enumerate(lengths)])
    assert torch.allclose(batch, alone, atol=1e-5)
    noisy = ids.clone()  # what sits in the padding must not matter
    noisy[ids == 0] = 7
    noisy[1, 0] = ids[1, 0]
    assert torch.allclose(net(noisy, torch.tensor(lengths)), batch, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_each_cell_trains_forward_and_backward(cell):
    torch.manual_seed(0)
    net = TweetRNN(40, 8, 3, cell, hidden_size=5, num_layers=3, bidirectional=True, dropout=0.2, emb_dropout=0.1,
                   pooling="last+max")
    ids = padded_batch(torch.Generator().manual_seed(0), [4, 7, 2], vocab=40)
    logits = net(ids, torch.tensor([4, 7, 2]))
    assert logits.shape == (3, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert net.embedding.weight.grad[0].abs().sum() == 0  # <pad> never learns


@pytest.fixture(scope="module")
def small_data(emotions):
    return Emotion.load_data(emotions.parent, EmotionConfig(), limit=256)


def test_frozen_embedding_keeps_pretrained_rows_and_trains_the_rest(small_data):
    torch.manual_seed(0)
    cfg = EmotionConfig(freeze_embedding=True, hidden_size=8, batch_size=64, weight_decay=0.1, optimizer="adamw")
    task = Emotion(cfg, small_data, TrialContext(max_epochs=1, seed=0))
    before = task.net.embedding.weight.detach().clone()
    task.train_epoch(0)
    after = task.net.embedding.weight.detach()
    found = small_data["pretrained"]["glove"]["found"]
    assert torch.equal(after[found], before[found])
    assert torch.equal(after[found], small_data["pretrained"]["glove"]["matrix"][found])
    assert not torch.equal(after[~found][1:], before[~found][1:])  # OOV rows (past <pad>) learn


def test_test_report_and_leaderboard(small_data, tmp_path):
    task = Emotion(EmotionConfig(hidden_size=8), small_data, TrialContext(max_epochs=1, seed=0))
    task.train_epoch(0)
    report = task.test_report(tmp_path)
    conf = torch.tensor(report["confusion_matrix"])
    assert conf.shape == (3, 3) and conf.sum() == 256
    assert conf.trace().item() / 256 == pytest.approx(task.evaluate("test")["acc"])
    assert (tmp_path / report["figure"]).stat().st_size > 1000
    trials = pd.DataFrame({"trial_id": list("abcd"), "config/cell": ["rnn_tanh", "rnn_relu", "gru", "lstm"],
                           "best_val_acc": [0.5, 0.6, 0.7, 0.65], "epochs": [2, 4, 6, 6]})
    board = Emotion.summarize(Trials.from_table(trials, "val_acc"))["leaderboard"]
    assert [(r["family"], r["trial_id"], r["trials"], r["epochs"]) for r in board] == [
        ("gru", "c", 1, 6), ("lstm", "d", 1, 6), ("rnn", "b", 2, 6)]


# ----------------------------------------------------------------------------- bad files


def write_emotions(folder: Path, src: Path, edit=None, n: int = 40) -> Path:
    """A copy of the first and last ``n`` real rows of both files; ``edit`` changes train lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        rows = real_rows(src, name)
        rows = [rows[0], *rows[1 : n + 1], *rows[-n:]]
        with open(folder / name, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)
    if edit:
        path = folder / FILES[0]
        path.write_bytes(edit(path.read_bytes()))
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda b: b.replace(b"emotion,content", b"feeling,content", 1), r"trainEmotions\.csv: header .* lacks"),
    (lambda b: b.replace(b"\nhappiness,", b"\njoy,", 1), r"trainEmotions\.csv:2: unknown emotion 'joy'"),
    (lambda b: b.replace(b"\nhappiness,", b"\nhappiness,\xff", 2), r"trainEmotions\.csv:2: not UTF-8"),
])
def test_bad_csv_is_one_clear_error(tmp_path, emotions, edit, message):
    write_emotions(tmp_path / "emotions", emotions, edit)
    with pytest.raises(DataError, match=message):
        Emotion.load_data(tmp_path, EmotionConfig(embedding="random"))


def test_empty_tweets_are_skipped_and_counted(tmp_path, emotions, capsys):
    folder = write_emotions(tmp_path / "emotions", emotions)
    lines = (folder / FILES[0]).read_text(encoding="utf-8").splitlines()
    lines[3] = "sadness,"
    lines[5] = 'neutral,"  "'
    (folder / FILES[0]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts, labels = read_emotion_csv(folder / FILES[0], CLASSES)
    assert len(texts) == len(labels) == 78
    assert "skipped 2 row(s) with empty content" in capsys.readouterr().out


def test_missing_files_name_what_is_expected(tmp_path):
    with pytest.raises(DataError, match=r"emotions/\{trainEmotions\.csv,testEmotions\.csv\}"):
        Emotion.load_data(tmp_path, EmotionConfig())


# -------------------------------------------------------------------------- the CLI sweep


@pytest.mark.slow
def test_short_cli_sweep_on_real_tweets(data_dir, emotions, ray_local, storage):
    from typer.testing import CliRunner

    from dlb_tune.cli import app

    args = ["sweep", "emotion", "--data-dir", str(data_dir), "--storage", str(storage), "--name", "emo",
            "--smoke", "--limit", "240", "--num-samples", "2", "--max-epochs", "2", "--cpus", "2",
            "--set", "cell=gru", "--set", "embedding=glove"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    final = json.loads((storage / "emo" / "final.json").read_text())
    assert final["trials"]["errored"] == 0
    report = final["test"]["test_report"]
    assert sum(map(sum, report["confusion_matrix"])) == 240
    assert (storage / "emo" / "test_report" / report["figure"]).exists()
    board = final["task_summary"]["leaderboard"]
    assert [r["family"] for r in board] == ["gru"] and board[0]["trials"] == 2
    assert "target_met" in final
