"""Phrase rules for abuse aimed at the listener: threats, slurs and identity hate, insults, sexual harassment.

The toxicity model learned mostly from tweets (``operators.content``): it
knows the slurs and swearing that fill them, and less of what a caller says
to an agent in clean words ("i know where you live", "are you stupid or
something"). These rules catch the common forms of that. Each one needs a target, a second
person or a named group, so "kill the transaction", "i feel like an idiot"
and "this damn card" match none. They read finals as the recogniser writes
them: lowercase words, apostrophes kept, no other punctuation
(``operators.spoken_form.normalize_text``).

``abuse_categories(text)`` names the categories whose rules match, in the
order of ``CATEGORIES``. The rules are data, not a model: what they miss,
the model may still catch. A test bounds how often they fire on the intent
corpora; ``models.toxicity_train`` reports the filter with and without them.
"""

from __future__ import annotations

import re

__all__ = ["CATEGORIES", "abuse_categories"]

CATEGORIES = ("threat", "slur", "insult", "harassment")


def _alt(words: str) -> str:
    """A regex alternation of the space-separated ``words`` (``_`` stands for a space inside a phrase)."""
    return "(?:" + "|".join(w.replace("_", " ") for w in sorted(words.split(), key=len, reverse=True)) + ")"


# Who the abuse is aimed at.
_YOU = _alt("you ya u")
_YOU_ALL = _alt("you ya u you_guys you_people you_lot y'all all_of_you")
_YOUR = _alt("your ur")
_BODY = _alt(
    "face head neck throat legs arms teeth nose jaw skull eyes family kids children wife husband mother mom "
    "office branch building house home car"
)
# A target followed by one of these is the object of a phrasal verb or a double object
# ("shoot you an email", "beat you to it", "you trash my application").
_NOT_AIMED = r"(?! (?:an?|the|some|over|to it|my|it|that|this|his|her|our|their)\b)"
# Words an insult may be stacked from ("you dumb lazy idiot"); each one an insult on its own.
_INSULT_ADJ = _alt(
    "stupid dumb useless incompetent pathetic worthless brainless brain_dead braindead retarded thick ignorant "
    "clueless hopeless lazy ugly fat disgusting spineless gutless moronic idiotic dense illiterate dumbest "
    "stupidest"
)
_INSULT_NOUN = _alt(
    "idiot idiots moron morons imbecile imbeciles cretin dumbass dumb_ass jackass asshole assholes arsehole "
    "bastard bastards bitch bitches cunt cunts dick dickhead prick pricks twat wanker douche douchebag loser "
    "losers clown clowns scum scumbag garbage trash pig pigs cow slob rat rats snake parasite parasites halfwit "
    "nitwit dimwit dunce fool fools buffoon muppet numpty piece_of_shit piece_of_garbage piece_of_crap "
    "piece_of_trash waste_of_space waste_of_oxygen waste_of_air waste_of_skin joke disgrace liar liars thief "
    "thieves crook crooks whore slut hoe skank"
)
# Words that make an insult only in front of one ("you lying bastard", not "are you lying").
_FILLER = _alt("a an such_a such_an the so just really very too fucking freaking damn absolute complete total "
               "little big bloody goddamn like_a like_an lying sad miserable dirty filthy stinking")
_STACK = rf"(?:(?:{_FILLER}|{_INSULT_ADJ}) )*"
_WILL = _alt(
    "i'll i_will i'm_going_to i'm_gonna i_am_going_to gonna we'll we_will we're_going_to i'm_coming_to "
    "i_swear_i'll i_swear_i_will i'll_make_sure someone_should somebody_should someone_needs_to "
    "somebody_needs_to someone_ought_to i_want_to i_hope_someone i_hope_somebody i'd_like_to i_could"
)
_HARM = _alt(
    "kill kills murder shoot shoots stab stabs hurt hurts beat beats punch slap strangle choke smash break "
    "burn bomb torch hunt rape slit rip gut bury kick beat_the_crap_out_of beat_the_shit_out_of "
    "kick_the_shit_out_of blow_up come_after come_for"
)
# Slurs that name no ordinary thing; words with an innocent sense too ("fag" a cigarette, "tranny"
# a gearbox, "monkey") count only when aimed at someone (``_SLUR_AIMED``).
_SLUR = _alt(
    "nigger niggers faggot faggots retard retards retarded spic spics chink chinks wetback "
    "wetbacks kike kikes gook gooks raghead ragheads towelhead towelheads beaner beaners paki pakis "
    "camel_jockey curry_muncher curry_munchers porch_monkey jungle_bunny shemale mongoloid spastic"
)
_SLUR_AIMED = _alt("fag fags tranny trannies dyke dykes homo homos queer monkey ape apes animal animals savage savages")
_GROUP = _alt(
    "foreigner foreigners immigrant immigrants illegal illegals muslim muslims jew jews mexican mexicans "
    "indian indians arab arabs"
)
_VERMIN = _alt("terrorists animals savages criminals subhuman vermin cockroaches rapists parasites apes monkeys")
_NASTY = _alt("dirty stupid dumb filthy fucking bloody damn")

_RULES: dict[str, tuple[str, ...]] = {
    "threat": (
        rf"\b{_WILL} (?:\w+ ){{0,3}}{_HARM} (?:{_YOU}|{_YOUR} {_BODY}){_NOT_AIMED}\b",
        rf"\b{_WILL} (?:\w+ ){{0,3}}teach {_YOU} a lesson\b",
        rf"\bi know where {_YOU} (?:live|work|sleep)\b",
        rf"\bwatch {_YOUR} back\b",
        r"\bkill (?:yourself|yourselves)\b",
        r"\bdie in a (?:fire|hole|ditch)\b",
        r"\bdrop dead\b(?! gorgeous)",
        rf"\bi hope {_YOU_ALL} (?:\w+ )?(?:die|dies|rot|burn|choke|suffer|get cancer|get hit)\b",
        rf"\b{_YOU} (?:should|deserve to) die\b",
        rf"\b{_YOU}(?:'re| are) (?:a )?dead(?: man| woman| meat)?\b(?! (?:right|serious|wrong|on|set|tired|slow|easy))",
        rf"\bget my hands on {_YOU}\b",
        rf"\bput {_YOU} in (?:the|a) (?:hospital|ground|grave|coffin|box)\b",
        rf"\b{_YOUR} (?:family|kids|children|wife|husband) (?:isn't|aren't|is not|are not|won't be|will not be) safe\b",
        r"\b(?:with|bring|bringing|grab|grabbing) (?:a|my) (?:gun|guns|knife|shotgun|rifle|machete|bomb)\b"
        r"(?! (?:license|licence|permit|safe|insurance|shop|store))",
        rf"\bbullet (?:in|through) (?:{_YOU}|{_YOUR} {_BODY})\b",
    ),
    "slur": (
        rf"\b{_SLUR}\b",
        rf"\b(?:(?:{_YOU}|{_YOU}'re|{_YOU} are)(?: an?)?|{_NASTY}) {_SLUR_AIMED}\b",
        rf"\b{_NASTY} {_GROUP}\b",
        r"\bgo back (?:to )?(?:your (?:own )?(?:country|village|jungle|desert|hut|cave)|where (?:you|ya) (?:came|come) from)\b",
        r"\b(?:a|some) (?:real|proper) (?:american|english|british|englishman|white)\b",
        rf"\b(?:{_YOUR} (?:kind|people)|{_YOU_ALL}|{_GROUP}) (?:are |should )?(?:all )?(?:be )?"
        rf"(?:{_VERMIN}|deported|sent back|shot|gassed|exterminated)\b",
        r"\b(?:don't|do not|won't|will not|not) (?:talk|speak|deal) (?:to|with) (?:a |some )?(?:woman|women|girl|girls|female|females)\b",
        r"\bput a (?:man|white person) on\b(?! the moon)",
        r"\bwomen (?:should not|shouldn't|can't|cannot) (?:be allowed|work|think|handle)\b",
    ),
    "insult": (
        rf"\b(?:{_YOU_ALL}|{_YOU}'re|{_YOU_ALL} are|are {_YOU_ALL}|{_YOU_ALL} were|{_YOU} sound|{_YOU} look|"
        rf"{_YOU} must be|{_YOU} seem) {_STACK}{_INSULT_NOUN}\b{_NOT_AIMED}",
        rf"\b(?:{_YOU_ALL}|{_YOU}'re|{_YOU_ALL} are|are {_YOU_ALL}|{_YOU_ALL} were|{_YOU} sound|{_YOU} look|"
        rf"{_YOU} must be|{_YOU} seem) {_STACK}{_INSULT_ADJ}\b",
        rf"\b(?:fuck|screw|f) (?:{_YOU}|yourself|off|{_YOUR})\b",
        r"\bgo (?:to hell|fuck yourself|screw yourself|die)\b",
        r"\beat (?:shit|dirt|a dick)\b",
        rf"\bshut (?:up|{_YOUR} (?:mouth|face|trap|hole))\b",
        r"\b(?:kiss|kick) my ass\b",
        r"\b(?:up yours|bite me|piss off|bugger off|sod off)\b",
        rf"\b{_YOU}(?:'re| are) nothing but\b",
    ),
    "harassment": (
        rf"\bwhat (?:are|r) {_YOU} wearing\b",
        rf"\b{_YOU}(?: sound| look|'re| are) (?:so |really )?(?:sexy|hot)\b",
        rf"\bsend (?:me )?(?:a )?(?:picture|pic|photo|pictures|pics|photos|nudes) of (?:yourself|{_YOU})\b",
        r"\bnudes\b",
        rf"\b(?:hear|make) {_YOU} (?:moan|scream|beg)\b",
        r"\b(?:suck|lick) my (?:dick|cock|balls|tits|pussy|ass)\b|\bsit on my (?:face|lap|dick|cock)\b",
        rf"\bmake {_YOUR} life (?:a )?(?:miserable|hell|living hell)\b",
        rf"\bi hope {_YOU} (?:get|gets) (?:fired|sacked|raped)\b",
        r"\bmake me a sandwich\b",
    ),
}
_COMPILED = {name: re.compile("|".join(f"(?:{p})" for p in rules)) for name, rules in _RULES.items()}


def abuse_categories(text: str) -> tuple[str, ...]:
    """The categories of ``CATEGORIES`` whose rules match ``text`` (a normalised final), in that order."""
    text = text.lower()
    return tuple(name for name in CATEGORIES if _COMPILED[name].search(text))
