"""Train the toxicity filter on Davidson et al. (2017) and compare it with two baselines.

Label 1 is "offensive or hate speech" (Davidson classes 0 and 1), 0 is
"neither". Tweets are cleaned (HTML entities, mentions, URLs, "RT") and
normalised the way finals look (``operators.spoken_form.normalize_text``: lowercase,
no punctuation, numbers spelled out), because the filter runs on ASR output.

Split: 70% train, 15% dev, 15% held-out test, stratified, seed 0. Training
also gets call-centre texts as negatives (``call_center_texts``), and two
generated sets that teach what the call centre means by toxic: the same
requests with a caller's swearing in them ("where is my damn card"), as
negatives (``swearing_negatives``), and with abuse aimed at the agent
("... you useless idiot", "i know where you work"), as positives
(``abuse_positives``); and hate against groups in clean words ("<group> are
parasites"), as positives, beside the same groups named without hate and violent
words aimed at things ("get rid of the hidden charges"), as negatives
(``group_hate_positives``, ``group_mention_negatives``). The model
(TF-IDF word 1-2 grams + character 2-4 grams, logistic regression) and its
threshold are chosen on dev. A second logistic regression on the all-MiniLM-L6-v2
embedding (the intent encoder's, which every final already gets) is fitted on
the same texts, and the threshold of the larger of the two scores is tuned for
the call centre (``tune_combined_threshold``): for the mean F1 of Davidson dev
and the hand-written sets seen in development, among the thresholds that flag
few clean call-centre requests. The phrase rules of ``operators.abuse_lexicon``
come on top (a match scores 1.0). The table is on the held-out test split:

* ours, exported to numpy (``operators.content.ToxicityModel``): as served,
  without the phrase rules, and the n-grams alone;
* ``alt-profanity-check`` (its wheel's TF-IDF + linear SVM). Its authors
  trained it on the whole Davidson corpus, so its figures here are on data it
  has seen: an upper bound, not a fair held-out score;
* a plain word list: ``better-profanity``'s list, flag when any word is on it.

Each row also gives F1 on the hand-written agent-abuse sets
(``models/assets/agent_abuse.csv``, ``agent_abuse_unseen.csv``) and on the
hand-written group-hate sets (``group_hate.csv``, ``group_hate_unseen.csv``) and threat set
(``agent_threats_unseen.csv``);
development sets, never trained on; per category with ``callstream eval-filter --csv``.

Usage::

    python -m models.toxicity_train                # train, save, print the table
    python -m models.toxicity_train --json         # last line: the table as JSON

Needs scikit-learn (fitting only), ``alt-profanity-check==1.9.1`` and
``better-profanity==0.7.0`` (baselines and the masking word list), and the
sentence encoder built by set-up.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from operators.spoken_form import normalize_text
from operators.content import DEFAULT_TOXICITY, ToxicityModel, text_features
from operators.intent import SentenceEncoder, default_encoder_dir

__all__ = [
    "AGENT_ABUSE",
    "AGENT_ABUSE_UNSEEN",
    "AGENT_THREATS_UNSEEN",
    "CALL_TURNS",
    "DAVIDSON",
    "GROUP_HATE",
    "GROUP_HATE_UNSEEN",
    "abuse_positives",
    "add_arguments",
    "clean_tweet",
    "conversation_negatives",
    "davidson_splits",
    "fit_embedding_head",
    "fit_toxicity",
    "group_hate_positives",
    "group_mention_negatives",
    "prf",
    "profanity_wordlist",
    "run",
    "swearing_negatives",
    "tune_combined_threshold",
]

DAVIDSON = Path(__file__).resolve().parents[2] / "shared" / "data" / "toxicity" / "davidson" / "data" / "labeled_data.csv"
_ASSETS = Path(__file__).resolve().parent / "assets"
# Hand-written call-centre transcripts (text,label,category), for measurement only. The second
# was written after the phrase rules and the generated training sets, to show how far their
# figures on the first carry over to sentences nobody tuned against.
AGENT_ABUSE = _ASSETS / "agent_abuse.csv"
AGENT_ABUSE_UNSEEN = _ASSETS / "agent_abuse_unseen.csv"
# Hand-written clean call turns (greetings, thanks, holds, closings), for measurement only.
CALL_TURNS = _ASSETS / "call_turns_clean.csv"
# Hand-written hate against groups in clean words, and the same groups named without it, for measurement only.
GROUP_HATE = _ASSETS / "group_hate.csv"
# The same, 80 lines written after the group generators: how far they carry over.
GROUP_HATE_UNSEEN = _ASSETS / "group_hate_unseen.csv"
# Threats that name no harm and advances aimed at the agent, and clean lines in the same words,
# for measurement only.
AGENT_THREATS_UNSEEN = _ASSETS / "agent_threats_unseen.csv"
_SEED = 0
# Generated examples per call-centre text set: 8,000 swearing negatives and 2,000 abuse
# positives. Twice the positives caught more abuse on the agent-abuse set but flagged 0.5% of
# clean held-out requests instead of 0.2%, and cost another 0.3 F1 points on Davidson.
_N_SWEARING = 8000
_N_ABUSE = 2000
_N_TURNS = 4000
# Of five sizes measured on GROUP_HATE (with the threshold then tuned on Davidson dev alone), this
# one gave F1 0.807 there with Davidson's F1 unchanged (3,000 / 4,500: 0.814, Davidson 0.001
# lower); each cost the unseen agent-abuse set about 0.04 F1 at that threshold.
_N_GROUP_HATE = 2000
_N_GROUP_CLEAN = 3000
# The combined threshold flags at most this share of clean call-centre text (held-out BANKING77 and
# CLINC150 requests, and CALL_TURNS): most of what a call centre hears is clean, so a false flag
# costs more than F1 counts. At 1 in 200 of the requests alone the threshold came out 0.56, which
# flagged an agent's "i'll put you on hold for a moment" and 3 of the 70 clean group mentions
# ("women deserve equal pay").
_MAX_CLEAN_FLAG_RATE = 0.004
# On the word list, but words for acts, identities or body parts rather than
# swearing: masking them on their own garbles ordinary speech ("kill the
# process", "my gay son's account", "strip the flange"). The sentence-level
# toxicity score still sees them in context.
_NOT_SWEARING = frozenset(
    "kill murder sex sexy gay lesbian drunk weed nazi stupid dumb fat god pot strip virgin woody loin flange "
    "pee sperm slave lube cowgirl cowgirls hate die crack escort nude naked kinky bondage".split()
)


def clean_tweet(text: str) -> str:
    """A tweet as a final would read it: entities decoded, handles/URLs/RT dropped, normalised."""
    text = html.unescape(text)
    text = re.sub(r"https?://\S+|@\w+|\bRT\b", " ", text)
    return normalize_text(text)


def davidson_splits(path: Path = DAVIDSON) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Cleaned texts, int labels (N,) and index arrays for "train", "dev" and "test"."""
    from sklearn.model_selection import train_test_split

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [clean_tweet(r["tweet"]) for r in rows]
    labels = np.array([int(r["class"]) in (0, 1) for r in rows], dtype=np.int64)
    idx = np.arange(len(rows))
    train, rest = train_test_split(idx, test_size=0.3, stratify=labels, random_state=_SEED)
    dev, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=_SEED)
    return texts, labels, {"train": train, "dev": dev, "test": test}


def profanity_wordlist() -> frozenset[str]:
    """``better-profanity``'s word list: plain lowercase words and phrases only (no leetspeak)."""
    import importlib.resources

    text = (importlib.resources.files("better_profanity") / "profanity_wordlist.txt").read_text()
    return frozenset(w.strip() for w in text.splitlines() if re.fullmatch(r"[a-z' ]+", w.strip()))


def _tfidf(docs: Sequence[list[str]], vocab: dict[str, int], idf: np.ndarray):  # -> scipy.sparse.csr_matrix
    """Sublinear-tf TF-IDF rows, l2-normalised, as ``operators.content`` computes them."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for grams in docs:
        counts: dict[int, int] = {}
        for g in grams:
            i = vocab.get(g)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        x = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * idf[idx]
        norm = float(np.sqrt(x @ x)) or 1.0
        indices.extend(idx.tolist())
        data.extend((x / norm).tolist())
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(docs), len(idf)))


def _vocab(docs: Sequence[list[str]], min_df: int) -> tuple[dict[str, int], np.ndarray]:
    df: dict[str, int] = {}
    for grams in docs:
        for g in set(grams):
            df[g] = df.get(g, 0) + 1
    kept = sorted(g for g, c in df.items() if c >= min_df)
    n = len(docs)
    # scikit-learn's smoothed idf.
    idf = np.array([np.log((1 + n) / (1 + df[g])) + 1.0 for g in kept])
    return {g: i for i, g in enumerate(kept)}, idf


def prf(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of binary predictions (label 1 positive)."""
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n": int(len(y))}


def _best_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    f1 = [prf(y, (scores >= t).astype(np.int64))["f1"] for t in grid]
    return float(grid[int(np.argmax(f1))])


def call_center_texts() -> tuple[list[str], list[str]]:
    """Texts with no offensive language, like what callers say: (train, held-out).

    Train: the BANKING77 train split and CLINC150 ``train`` + ``oos_train``.
    Held-out: the BANKING77 dev split and CLINC150 ``val`` + ``oos_val``
    (never test splits). Davidson alone is 83% offensive tweets, so a model
    fitted on it alone flags ordinary banking requests.
    """
    from models.intent_train import banking77_split, load_banking77, load_clinc150

    texts, labels = load_banking77()
    train, dev = banking77_split(labels)
    clinc = load_clinc150()
    fit = [texts[i] for i in train] + clinc["train"][0] + clinc["oos_train"][0]
    held = [texts[i] for i in dev] + clinc["val"][0] + clinc["oos_val"][0]
    return fit, held


# A caller's swearing at things, not people. Davidson labels every swear word offensive; the
# call centre flags it as profanity (masked in captions) and keeps toxicity for abuse.
_SWEAR_BEFORE = ("fucking", "damn", "bloody", "goddamn", "freaking", "stupid", "shitty", "crappy", "fucking stupid")
_SWEAR_PREFIX = ("damn", "shit", "oh crap", "holy shit", "god damn it", "fuck", "bloody hell", "jesus christ",
                 "for fuck's sake", "what the hell", "oh hell", "crap")
_SWEAR_SUFFIX = ("what the hell", "for fuck's sake", "this is bullshit", "this sucks", "damn it", "god damn it",
                 "what the fuck", "it's such crap", "this is a shitty situation", "i'm so pissed off")
_THINGS = frozenset(
    "card account app transfer payment fee fees atm phone money machine bank website pin code balance charge "
    "cheque check loan statement refund limit rate transaction login password deposit bill alarm".split()
)
# Abuse a caller aims at an agent, added to a request. Written for training: none of these is
# part of a sentence of the agent-abuse sets or PROBE_HATEFUL, nor the other way round.
_ABUSE = (
    "you useless idiot", "are you thick or what", "you brainless clown", "listen you moron",
    "you're an incompetent fool", "you lot are a bunch of crooks", "you pathetic little man", "fuck you very much",
    "go to hell already", "screw you and your company", "shut your trap", "you dumb cow", "you are a waste of space",
    "you ignorant bastard", "you stupid prick", "you worthless piece of crap", "i'll kill you",
    "i know where you work", "i'm going to hurt you", "i'll beat you up", "someone should shoot you",
    "you deserve to die", "i'll break your legs", "i'll come down there and smash your face",
    "i hope you choke", "i'll find out where you live", "you're going to pay for this with your life",
    "i'll burn your house down", "you sound hot baby", "what colour is your underwear", "i want to see you naked",
    "send me your number sexy", "go back where you came from", "you foreigners are all useless",
    "you sound like a dirty immigrant", "brain dead retard", "you lot are vermin", "your kind shouldn't have jobs",
)


# Hate against a group said in clean words ("<group> are parasites", "get <group> out"), which
# Davidson's slur-filled tweets do not teach, and the same groups named without hate, so that
# the group's name alone teaches nothing. Written for training: ``GROUP_HATE`` (measurement only)
# was written before these parts and ``GROUP_HATE_UNSEEN`` after them, and none of their
# sentences comes out of the generators.
_GROUPS = (
    "women", "girls", "men", "feminists", "immigrants", "migrants", "refugees", "foreigners", "asylum seekers",
    "muslims", "jews", "christians", "catholics", "hindus", "sikhs", "atheists", "black people", "white people",
    "asians", "africans", "arabs", "mexicans", "latinos", "chinese people", "indians", "pakistanis", "poles",
    "romanians", "travellers", "gay people", "gay men", "lesbians", "bisexual people", "trans people",
    "transgender women", "disabled people", "people in wheelchairs", "autistic people", "blind people",
    "old people", "pensioners", "teenagers", "poor people", "single mothers", "fat people", "people on benefits",
)
_THEY = ("those people", "that lot", "their kind", "people like them", "these people", "the lot of them")
_HATE_TRAITS = (
    "subhuman", "worthless", "filthy", "scum", "a plague", "a virus", "less than human", "born liars", "evil",
    "inferior", "dirty thieves", "a drag on everyone", "mentally defective", "a stain on this country",
    "pointless mouths to feed", "cockroaches", "a pack of dogs", "degenerates", "sick in the head",
    "genetically stupid", "too dumb to think for themselves", "a danger to our children", "nothing but trouble",
    "all crooks", "a curse", "a burden nobody asked for", "vile", "lower than animals", "a bunch of leeches",
    "freaks of nature",
)
_HATE_FATES = (
    "be deported tomorrow", "be banned from working", "be sterilised", "be kicked out", "be wiped out",
    "never get the vote", "never be allowed to marry", "be sent back where they came from", "be caged",
    "be shot on sight", "lose all their rights", "know their place", "be kept away from decent people",
    "be segregated", "disappear for good", "be thrown in prison", "be barred from public places", "be gassed",
    "be driven out of town", "stop breeding",
)
_HATE_FEELINGS = (
    "i hate", "i despise", "i loathe", "i can't bear", "i'm sick of", "i'm disgusted by", "nobody wants",
    "i would never trust", "i spit on", "death to", "to hell with", "i wish we could get rid of",
)
_HATE_CLAIMS = (
    "ruin everything they touch", "are taking over", "steal our jobs", "can't be trusted", "don't belong here",
    "have no place in society", "don't deserve any rights", "don't deserve to live", "only bring crime",
    "are all the same vermin", "should not be treated as people", "are a disgrace to humanity",
    "are destroying our way of life", "make me want to vomit", "are ruining the neighbourhood",
    "spread disease", "are a threat to civilisation",
)
_HATE_EXCLUSIONS = (
    "get {g} out of this country", "kick each of {g} out", "the world would be better without {g}",
    "we'd be better off without any {g}", "ban {g} from our schools", "never let {g} into this country",
    "no {g} allowed in here", "round up {g} and ship them off", "don't serve {g} in this shop",
    "make life hell for {g} until they leave",
)
_RELIGIONS = ("islam", "judaism", "christianity", "hinduism", "sikhism", "catholicism")
_RELIGION_HATE = ("a religion of hate", "a sickness", "pure evil", "a poison", "a death cult", "a scam for idiots",
                  "a cancer that must be cut out")
_HATE_OPENERS = ("", "", "", "honestly ", "let's be real ", "everyone knows ", "i'm just saying ", "the truth is ")
_HATE_CLOSERS = ("", "", "", " and that's a fact", " every last one", " all of them", " and everyone knows it")
_CLEAN_CLAIMS = (
    "are welcome here", "have the same rights as everyone", "deserve respect", "face discrimination at work",
    "are protected by law", "often struggle to get a mortgage", "make up a big part of our customers",
    "can open an account at any branch", "celebrate different holidays", "are part of our community",
    "were treated badly in the past", "started many small businesses here", "volunteer at the food bank",
    "should be paid the same as anyone", "deserve a fair chance", "pay the same fees as anyone",
    "can ask for a bigger font", "have their own support line", "are eligible for the discount",
    "use the app more than anyone",
)
_CLEAN_CONTEXTS = (
    "i read an article about {g}", "there's a support group for {g}", "we ran a charity event for {g}",
    "does the bank have a programme for {g}", "discrimination against {g} is illegal", "my best friends are {g}",
    "my neighbours are {g}", "i watched a film about {g}", "the survey asked {g} about banking",
    "the new branch hired a lot of {g}", "the census counts {g} too", "racism against {g} makes me angry",
    "hate against {g} has to stop", "i stood up for {g} at work", "our charity helps {g} find housing",
    "is there an account designed for {g}", "the law changed for {g} last year",
)
# Words of violence and disgust aimed at things, which a caller says: they must not make a text toxic.
_CLEAN_THINGS = ("paper statements", "overdraft fees", "expired cards", "spam calls", "hidden charges",
                 "the hold music", "these weeds", "the bugs in the app", "the mice in the loft", "the mould in my flat",
                 "the queue at the branch", "late payment fees", "the legacy system", "these pop ups")
_CLEAN_THING_VERBS = ("get rid of {t}", "wipe out {t}", "ban {t}", "i hate {t}", "{t} are a plague",
                      "{t} should be destroyed", "i can't bear {t}", "burn {t}", "to hell with {t}",
                      "{t} make me sick", "we'd be better off without {t}", "i'm sick of {t}")


def group_hate_positives(n: int, *, seed: int = _SEED + 3) -> list[str]:
    """``n`` sentences of hate against a group (or "those people") in clean words, label 1."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        g = rng.choice(_THEY) if rng.random() < 0.15 else rng.choice(_GROUPS)
        form = rng.randrange(6)
        if form == 0:
            core = f"{g} are {rng.choice(_HATE_TRAITS)}"
        elif form == 1:
            core = f"{g} should {rng.choice(_HATE_FATES)}"
        elif form == 2:
            core = f"{rng.choice(_HATE_FEELINGS)} {g}"
        elif form == 3:
            core = f"{g} {rng.choice(_HATE_CLAIMS)}"
        elif form == 4:
            core = rng.choice(_HATE_EXCLUSIONS).format(g=g)
        else:
            core = f"{rng.choice(_RELIGIONS)} is {rng.choice(_RELIGION_HATE)}"
        out.append(normalize_text(f"{rng.choice(_HATE_OPENERS)}{core}{rng.choice(_HATE_CLOSERS)}"))
    return out


def group_mention_negatives(n: int, *, seed: int = _SEED + 4) -> list[str]:
    """``n`` sentences naming the groups of ``group_hate_positives`` without hate, and violent or
    disgusted words aimed at things, label 0."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        g = rng.choice(_GROUPS)
        form = rng.randrange(3)
        if form == 0:
            text = f"{g} {rng.choice(_CLEAN_CLAIMS)}"
        elif form == 1:
            text = rng.choice(_CLEAN_CONTEXTS).format(g=g)
        else:
            text = rng.choice(_CLEAN_THING_VERBS).format(t=rng.choice(_CLEAN_THINGS))
        out.append(normalize_text(text))
    return out


# What callers and agents say around the requests: greetings, thanks, praise, holds, closings.
# The requests alone never taught the filter these, and the abuse above has "fuck you very much",
# so "thank you very much" was flagged. Written for training: the clean call turns of
# ``CALL_TURNS`` (measurement only) were written apart from these parts.
_TURN_PARTS = (
    ("hello", "hi", "hi there", "good morning", "good evening", "hey", "hello again", "morning", "evening"),
    ("thank you", "thanks", "thanks a lot", "thank you so much", "thank you very much", "thanks very much",
     "many thanks", "thanks ever so much", "thank you kindly", "much obliged", "cheers", "thanks a bunch",
     "thank you for your help", "thanks for your time", "thank you for that", "thanks for explaining"),
    ("great", "perfect", "brilliant", "lovely", "wonderful", "excellent", "fantastic", "amazing", "super",
     "that's great", "that's very kind", "you've been very helpful", "you've been a great help",
     "that's really helpful", "you're very kind", "i appreciate it", "i really appreciate that", "nice one",
     "cool", "fair enough", "that's a relief", "what a relief", "you're a lifesaver", "you're a legend",
     "that's so kind of you", "you're brilliant", "that's very good news"),
    ("okay", "ok", "alright", "right", "sure", "yes", "yeah", "yep", "no", "nope", "of course", "got it",
     "i see", "uh huh", "mm hmm", "no problem", "no worries", "fine", "sounds good", "that works",
     "that's fine", "absolutely", "definitely", "exactly", "very good", "very well"),
    ("bye", "bye bye", "goodbye", "have a nice day", "have a good day", "have a good one", "you too",
     "take care", "speak soon", "see you", "that's all for today", "that's everything", "nothing else",
     "that's all thanks", "all the best", "enjoy your day", "have a great evening"),
    ("hold on", "one second", "just a moment", "bear with me", "let me check", "can you hear me",
     "sorry can you say that again", "pardon", "i didn't hear you", "could you speak up", "are you there",
     "sorry about that", "my apologies", "no rush", "take your time", "sorry the line is bad",
     "you're breaking up", "let me get a pen", "just a sec"),
    ("how can i help you", "is there anything else", "thanks for calling", "thank you for waiting",
     "i'm happy to help", "let me look into that", "can i have your name please", "can you confirm your postcode",
     "you're welcome", "my pleasure", "not a problem at all", "glad i could help", "i'll transfer you now",
     "i'll stay on the line", "it's all done now", "i understand", "i completely understand"),
)
_TURN_ADDRESS = ("mate", "love", "sir", "madam", "my friend", "dear", "buddy", "darling", "pal")
_TURN_INTENSIFY = (("very", "very very", "so", "really", "ever so", "so very"), ("much", "kind", "helpful", "good"))


def conversation_negatives(n: int, *, seed: int = _SEED + 2) -> list[str]:
    """``n`` call turns around the requests: one to three parts of ``_TURN_PARTS`` (sometimes with
    a term of address, or "thank you <very> <much>"-style intensifiers)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(rng.choice(_TURN_PARTS)) for _ in range(rng.choice((1, 1, 2, 2, 3)))]
        if rng.random() < 0.15:
            parts.insert(rng.randrange(len(parts) + 1),
                         f"thank you {rng.choice(_TURN_INTENSIFY[0])} {rng.choice(_TURN_INTENSIFY[1])}")
        if rng.random() < 0.2:
            parts.append(rng.choice(_TURN_ADDRESS))
        out.append(normalize_text(" ".join(parts)))
    return out


def swearing_negatives(texts: Sequence[str], n: int, *, seed: int = _SEED) -> list[str]:
    """``n`` of ``texts`` (clean requests) with swearing added: before a word for a thing
    ("my fucking card"), or as an exclamation before or after."""
    rng = random.Random(seed)
    out = []
    for text in rng.sample(list(texts), n):
        words = text.split()
        things = [i for i, w in enumerate(words) if w in _THINGS]
        r = rng.random()
        if things and r < 0.5:
            words.insert(rng.choice(things), rng.choice(_SWEAR_BEFORE))
            out.append(" ".join(words))
        elif r < 0.75:
            out.append(f"{rng.choice(_SWEAR_PREFIX)} {text}")
        else:
            out.append(f"{text} {rng.choice(_SWEAR_SUFFIX)}")
    return out


def abuse_positives(texts: Sequence[str], n: int, *, seed: int = _SEED + 1) -> list[str]:
    """``n`` of ``texts`` (clean requests) with abuse aimed at the agent before or after them."""
    rng = random.Random(seed)
    out = []
    for text in rng.sample(list(texts), n):
        abuse = rng.choice(_ABUSE)
        out.append(f"{abuse} {text}" if rng.random() < 0.5 else f"{text} {abuse}")
    return out


def fit_toxicity(
    texts: Sequence[str],
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    *,
    negatives: Sequence[str] = (),
    positives: Sequence[str] = (),
    c: float = 3.0,
) -> ToxicityModel:
    """Fit on ``split["train"]`` plus ``negatives`` (label 0) and ``positives`` (label 1), tune the
    threshold on ``split["dev"]``."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    n_davidson = len(texts)
    texts = [*texts, *negatives, *positives]
    labels = np.concatenate(
        [labels, np.zeros(len(negatives), dtype=np.int64), np.ones(len(positives), dtype=np.int64)]
    )
    split = {**split, "train": np.concatenate([split["train"], np.arange(n_davidson, len(texts))])}
    feats = [text_features(t) for t in texts]
    words = [f[0] for f in feats]
    chars = [f[1] for f in feats]
    train = split["train"]
    wv, widf = _vocab([words[i] for i in train], min_df=2)
    cv, cidf = _vocab([chars[i] for i in train], min_df=3)

    def matrix(idx: np.ndarray):
        return hstack([_tfidf([words[i] for i in idx], wv, widf), _tfidf([chars[i] for i in idx], cv, cidf)]).tocsr()

    clf = LogisticRegression(C=c, max_iter=5000).fit(matrix(train), labels[train])
    coef = clf.coef_[0]
    model = ToxicityModel(
        word_vocab=wv,
        word_idf=widf,
        word_coef=coef[: len(wv)],
        char_vocab=cv,
        char_idf=cidf,
        char_coef=coef[len(wv) :],
        bias=float(clf.intercept_[0]),
        threshold=0.5,
        mask_words=frozenset(),
        name="toxicity-davidson-tfidf-lr",
    )
    dev_scores = np.array([model.score(texts[i]) for i in split["dev"]])
    threshold = _best_threshold(dev_scores, labels[split["dev"]])
    # Mask a listed word unless Davidson shows it is not offensive ("kill", "hell"
    # in "kill the process", "what the hell is this fee"). The swearing that
    # ``swearing_negatives`` teaches is not toxic is still swearing: masked.
    listed = {w for w in profanity_wordlist() if " " not in w} - _NOT_SWEARING
    swearing = {w for phrase in (*_SWEAR_BEFORE, *_SWEAR_PREFIX, *_SWEAR_SUFFIX) for w in phrase.split()}
    mask = frozenset(w for w in listed if w not in wv or w in swearing or coef[wv[w]] > 0.5)
    dev = prf(labels[split["dev"]], (dev_scores >= threshold).astype(np.int64))
    return replace(model, threshold=threshold, mask_words=mask, metrics={f"dev_{k}": v for k, v in dev.items()})


def fit_embedding_head(
    model: ToxicityModel,
    x: np.ndarray,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    *,
    negatives: np.ndarray,
    positives: np.ndarray | None = None,
    encoder: str,
    c: float = 10.0,
) -> ToxicityModel:
    """Add the sentence-embedding head: logistic regression on ``x[split["train"]]`` plus ``negatives``
    (embeddings, label 0) and ``positives`` (label 1). Its threshold is ``tune_combined_threshold``'s."""
    from sklearn.linear_model import LogisticRegression

    train = split["train"]
    positives = np.zeros((0, x.shape[1]), dtype=x.dtype) if positives is None else positives
    xs = np.concatenate([x[train], negatives, positives])
    ys = np.concatenate(
        [labels[train], np.zeros(len(negatives), dtype=np.int64), np.ones(len(positives), dtype=np.int64)]
    )
    clf = LogisticRegression(C=c, max_iter=5000).fit(xs, ys)
    return replace(model, embedding_coef=clf.coef_[0].astype(np.float32), embedding_bias=float(clf.intercept_[0]),
                   embedding_encoder=encoder)


def tune_combined_threshold(
    model: ToxicityModel, dev: dict[str, tuple[np.ndarray, np.ndarray]], clean: np.ndarray
) -> ToxicityModel:
    """``model`` flagged at the threshold of ``max(n-gram, embedding)`` with the best mean F1 over
    ``dev`` (name -> (scores, labels)) among those that flag at most ``_MAX_CLEAN_FLAG_RATE`` of
    ``clean`` (scores of texts with nothing offensive); each set's F1 and the clean flag rate go
    to its metrics.

    Not Davidson dev alone: there F1 is flat from 0.46 to 0.70 (0.960-0.966), and its peak (0.71)
    found 69% of the hand-written hate against groups and lost a fifth of the insults written
    after the rules, which a call centre hears and tweets rarely say.
    """
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    allowed = [t for t in grid if np.mean(clean >= t) <= _MAX_CLEAN_FLAG_RATE]
    if not allowed:
        raise ValueError(f"every threshold flags more than {_MAX_CLEAN_FLAG_RATE:.1%} of the clean texts")

    def f1s(t: float) -> dict[str, float]:
        return {name: prf(y, (s >= t).astype(np.int64))["f1"] for name, (s, y) in dev.items()}

    threshold = float(max(allowed, key=lambda t: np.mean(list(f1s(t).values()))))
    metrics = {f"dev_combined_{name}_f1": f1 for name, f1 in f1s(threshold).items()}
    metrics["dev_combined_clean_flag_rate"] = float(np.mean(clean >= threshold))
    return replace(model, combined_threshold=threshold, metrics={**model.metrics, **metrics})


# Hate said in clean words, and clean call-centre text with words that sound bad, written for
# this check (not from any benchmark). Davidson's tweets teach slurs and swearing; this shows
# whether a filter learned more than the words.
PROBE_HATEFUL = (
    "women are too stupid to vote", "all immigrants are criminals and should be deported", "go back to your country",
    "muslims are terrorists", "gay people are disgusting", "i hope you die", "you people are animals",
    "black people are inferior", "jews control the banks", "kill all of them", "disabled people are a burden",
    "you are worthless trash", "women belong in the kitchen", "those people are subhuman",
    "i hate you and your kind", "you are an idiot",
)
PROBE_CLEAN = (
    "i want to cancel my card", "kill the process please", "my gay son needs an account", "i hate waiting on hold",
    "the immigration office sent me a letter", "women's savings account", "what is the interest rate",
    "my card died", "the black card has no fee", "i am from another country",
    "can you help me with my muslim friend's transfer", "this is stupid slow", "my account was killed by fraud",
    "please transfer money to my wife", "i lost my job", "what time do you close",
)


def _word_list_flags(texts: Sequence[str], words: frozenset[str]) -> np.ndarray:
    singles = {w for w in words if " " not in w}
    phrases = [f" {w} " for w in words if " " in w]
    out = []
    for t in texts:
        padded = f" {t} "
        out.append(any(w in singles for w in t.split()) or any(p in padded for p in phrases))
    return np.array(out, dtype=np.int64)


def _read_labelled(path: Path) -> tuple[list[str], np.ndarray]:
    """Normalised texts and int labels (N,) of a ``text,label[,category]`` CSV."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [normalize_text(r["text"]) for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


def compare(
    model: ToxicityModel, texts: Sequence[str], labels: np.ndarray, idx: np.ndarray, clean: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray],
) -> dict[str, dict[str, float]]:
    """P/R/F1 of ours (as served, without the phrase rules, without the embedding head),
    alt-profanity-check and the word list on ``texts[idx]``.

    ``flag_rate_call_center`` is the share of ``clean`` (held-out banking and
    assistant requests, none offensive) that each one flags; ``probe_recall`` and
    ``probe_flags_clean`` are on ``PROBE_HATEFUL`` and ``PROBE_CLEAN``;
    ``agent_abuse_f1`` and ``agent_abuse_unseen_f1`` on ``AGENT_ABUSE`` and
    ``AGENT_ABUSE_UNSEEN``; ``group_hate_f1`` and ``group_hate_unseen_f1`` on ``GROUP_HATE`` and
    ``GROUP_HATE_UNSEEN``; ``threats_unseen_f1`` on ``AGENT_THREATS_UNSEEN``; ``flag_rate_call_turns`` on
    ``CALL_TURNS`` (clean).
    """
    from profanity_check import predict_prob

    words = profanity_wordlist()
    embedded: dict[tuple[str, ...], np.ndarray] = {}  # two rows read the same embeddings

    def ours(rules: bool) -> Callable[[Sequence[str]], np.ndarray]:
        def flags(xs: Sequence[str]) -> np.ndarray:
            key = tuple(xs)
            if key not in embedded:
                embedded[key] = embed(xs)
            return np.array([model.score(t, e, rules=rules) for t, e in zip(xs, embedded[key])]) >= model.combined_threshold

        return flags

    scorers = {
        "ours (rules, then max of tf-idf lr and embedding lr)": ours(True),
        "ours without the phrase rules": ours(False),
        "ours, rules and tf-idf + lr (no encoder)": lambda xs: np.array([model.score(t) for t in xs]) >= model.threshold,
        "alt-profanity-check 1.9.1 (saw davidson)": lambda xs: predict_prob(list(xs)) >= 0.5,
        "word list (better-profanity 0.7.0)": lambda xs: _word_list_flags(xs, words).astype(bool),
    }
    sub = [texts[i] for i in idx]
    hand_written = {"agent_abuse_f1": _read_labelled(AGENT_ABUSE),
                    "agent_abuse_unseen_f1": _read_labelled(AGENT_ABUSE_UNSEEN),
                    "group_hate_f1": _read_labelled(GROUP_HATE),
                    "group_hate_unseen_f1": _read_labelled(GROUP_HATE_UNSEEN),
                    "threats_unseen_f1": _read_labelled(AGENT_THREATS_UNSEEN)}
    turns = _read_labelled(CALL_TURNS)[0]
    table = {}
    for name, flags in scorers.items():
        row = prf(labels[idx], flags(sub).astype(np.int64))
        row["flag_rate_call_center"] = float(np.mean(flags(clean)))
        row["probe_recall"] = float(np.mean(flags(PROBE_HATEFUL)))
        row["probe_flags_clean"] = float(np.mean(flags(PROBE_CLEAN)))
        row["flag_rate_call_turns"] = float(np.mean(flags(turns)))
        for key, (xs, y) in hand_written.items():
            row[key] = prf(y, flags(xs).astype(np.int64))["f1"]
        table[name] = row
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DAVIDSON, help="Davidson labeled_data.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_TOXICITY, help="where to write the model (.npz)")
    parser.add_argument("--encoder-dir", type=Path, default=None, help="built sentence encoder (default: the cache)")
    parser.add_argument("--json", action="store_true", help="last line: the comparison as one JSON object")


def run(args: argparse.Namespace) -> int:
    texts, labels, split = davidson_splits(args.data)
    negatives, clean = call_center_texts()
    swearing = swearing_negatives(negatives, _N_SWEARING)
    abuse = abuse_positives(negatives, _N_ABUSE)
    held = set(_read_labelled(CALL_TURNS)[0])  # measured on, so never trained on, even by chance
    turns = [t for t in conversation_negatives(_N_TURNS) if t not in held]
    extra_negatives = [*negatives, *swearing, *turns, *group_mention_negatives(_N_GROUP_CLEAN)]
    extra_positives = [*abuse, *group_hate_positives(_N_GROUP_HATE)]
    model = fit_toxicity(texts, labels, split, negatives=extra_negatives, positives=extra_positives)
    encoder = SentenceEncoder(args.encoder_dir or default_encoder_dir(), threads=0)
    print(f"embedding {len(texts) + len(extra_negatives) + len(extra_positives)} texts with {encoder.name} ...",
          flush=True)
    x = encoder.encode(texts)
    model = fit_embedding_head(model, x, labels, split, negatives=encoder.encode(extra_negatives),
                               positives=encoder.encode(extra_positives), encoder=encoder.name)
    embedded: dict[tuple[str, ...], np.ndarray] = {}  # the threshold and the table read the same sets

    def embed(xs: Sequence[str]) -> np.ndarray:
        if tuple(xs) not in embedded:
            embedded[tuple(xs)] = encoder.encode(xs)
        return embedded[tuple(xs)]

    def scores(xs: Sequence[str], rows: np.ndarray) -> np.ndarray:
        return np.array([model.score(t, e) for t, e in zip(xs, rows)])

    dev = {"davidson": (scores([texts[i] for i in split["dev"]], x[split["dev"]]), labels[split["dev"]])}
    for name, path in (("group_hate", GROUP_HATE), ("agent_abuse", AGENT_ABUSE)):
        xs, y = _read_labelled(path)
        dev[name] = (scores(xs, embed(xs)), y)
    call_turns = _read_labelled(CALL_TURNS)[0]
    clean_scores = np.concatenate([scores(clean, embed(clean)), scores(call_turns, embed(call_turns))])
    model = tune_combined_threshold(model, dev, clean_scores)
    table = compare(model, texts, labels, split["test"], clean, embed)
    ours = next(iter(table.values()))
    model = replace(model, metrics={**model.metrics, **{f"test_{k}": v for k, v in ours.items()}})
    model.save(args.out)
    print(f"saved {args.out} ({args.out.stat().st_size // 1024} KB), thresholds {model.threshold:.2f} (n-grams), "
          f"{model.combined_threshold:.2f} (with the embedding head)")
    print(f"held-out Davidson test split, n={len(split['test'])}, label 1 = offensive or hate")
    print(f"{'filter':52s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'flags clean':>11s} {'probe R':>7s} "
          f"{'probe FP':>8s} {'abuse F1':>8s} {'unseen F1':>9s} {'turns FP':>8s} {'group F1':>8s} {'unseen':>6s} "
          f"{'threats':>7s}")
    for name, m in table.items():
        print(f"{name:52s} {m['precision']:9.4f} {m['recall']:7.4f} {m['f1']:7.4f} {m['flag_rate_call_center']:11.4f} "
              f"{m['probe_recall']:7.3f} {m['probe_flags_clean']:8.3f} {m['agent_abuse_f1']:8.3f} "
              f"{m['agent_abuse_unseen_f1']:9.3f} {m['flag_rate_call_turns']:8.3f} {m['group_hate_f1']:8.3f} "
              f"{m['group_hate_unseen_f1']:6.3f} {m['threats_unseen_f1']:7.3f}")
    print(f"flags clean: share of {len(clean)} held-out BANKING77 dev + CLINC150 val/oos_val texts flagged; "
          f"probe: {len(PROBE_HATEFUL)} hateful and {len(PROBE_CLEAN)} clean sentences written for the check; "
          f"abuse / unseen: {AGENT_ABUSE.name} and {AGENT_ABUSE_UNSEEN.name} "
          "(per category: callstream eval-filter --csv); "
          f"turns FP: share of {CALL_TURNS.name}'s clean call turns flagged; group / unseen: {GROUP_HATE.name}, "
          f"{GROUP_HATE_UNSEEN.name}; threats: {AGENT_THREATS_UNSEEN.name}")
    if args.json:
        print(json.dumps(table))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
