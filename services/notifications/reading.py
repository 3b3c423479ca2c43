"""What a person reads about a proposal, written for them, in their language.

Emails and the answer page both show the same two things, built here from data (never from
matching's English sentences): the reasons for the match, from each explanation item's `facts`,
written to the reader's side (a mentee reads about the mentor, a mentor about the mentee); and
the other person's profile (a mentee sees the mentor's expertise and, when known, what they
would like to learn; a mentor the mentee's goals and, when known, what they can share; languages
and time zone to both). English and French; another locale reads English.

Language names, lists and numbers come from Babel, so they follow the reader's language
("français et anglais", "4,6"). French puts a plain space before ":" and ";", as the templates do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.lists import format_list
from babel.numbers import format_decimal

from services.notifications.domain import choose_locale

LOCALES = ("en", "fr")

# Plain words for matching's criteria, per locale: the label before each reason.
CRITERIA: dict[str, dict[str, str]] = {
    "en": {
        "topic_fit": "Topics",
        "languages": "Languages",
        "timezone": "Time zone",
        "seniority": "Experience",
        "department": "Department",
        "reputation": "Feedback from earlier mentees",
        "load": "Availability",
        "mutual_learning": "Learning from each other",
    },
    "fr": {
        "topic_fit": "Sujets",
        "languages": "Langues",
        "timezone": "Fuseau horaire",
        "seniority": "Expérience",
        "department": "Service",
        "reputation": "Avis des mentorés précédents",
        "load": "Disponibilité",
        "mutual_learning": "Apprendre l'un de l'autre",
    },
}

# A mentor's expertise level (1 = some experience, 5 = recognised expert), in words.
LEVELS: dict[str, dict[int, str]] = {
    "en": {
        1: "some experience",
        2: "working knowledge",
        3: "solid experience",
        4: "advanced",
        5: "recognised expert",
    },
    "fr": {
        1: "premières expériences",
        2: "bonnes bases",
        3: "expérience confirmée",
        4: "niveau avancé",
        5: "expert reconnu",
    },
}
# Only a mentee's most important goals are marked: the order already says the rest.
TOP_PRIORITY = {"en": "top priority", "fr": "prioritaire"}
PROFILE_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "expertise": "Expertise",
        "goals": "Goals",
        "offers": "Can share",
        "learning_interests": "Would like to learn",
        "languages": "Languages",
        "timezone": "Time zone",
    },
    "fr": {
        "expertise": "Expertise",
        "goals": "Objectifs",
        "offers": "Peut partager",
        "learning_interests": "Souhaite apprendre",
        "languages": "Langues",
        "timezone": "Fuseau horaire",
    },
}
CURRENTLY = {"en": "currently", "fr": "actuellement"}
# A goal covered through another topic of the mentor's: "python (through django)".
_VIA = {"en": "through", "fr": "via"}


@dataclass(frozen=True)
class Reason:
    criterion: str
    label: str  # the criterion in plain words, e.g. "Topics" / "Sujets"
    text: str  # the sentence, e.g. "Covers 2 of your 3 goals: python, sql"


@dataclass(frozen=True)
class Profile:
    name: str | None  # display name (None: not known yet, or erased)
    lines: tuple[tuple[str, str], ...]  # (label, text): "Expertise", "python (expert), ..."


@dataclass(frozen=True)
class Reader:
    """Who reads ("mentee" or "mentor") and in which locale ("en" or "fr")."""

    role: str
    locale: str

    @property
    def fr(self) -> bool:
        return self.locale == "fr"

    @property
    def mentor(self) -> bool:
        return self.role == "mentor"

    def number(self, value: float, pattern: str | None = None) -> str:
        return format_decimal(value, format=pattern, locale=self.locale)

    def items(self, values: Sequence[str], style: Literal["standard", "unit"] = "standard") -> str:
        """A list in the reader's words, "a, b and c" / "a, b et c" ("unit": English without
        "and", for a profile line)."""
        return format_list(list(values), style=style, locale=self.locale)

    def languages(self, codes: Sequence[str]) -> str:
        names = _babel(self.locale).languages
        return self.items([names.get(code, code) for code in codes])

    def plural(self, count: float, one: str, many: str) -> str:
        """English counts 0 and 1.5 as plural, French only from 2 ("1,5 heure", "0 place")."""
        single = abs(count) < 2 if self.fr else count == 1
        return one if single else many


def reader(role: str, locale: str) -> Reader:
    return Reader(role, choose_locale([locale], LOCALES))


@cache
def _babel(locale: str) -> Locale:
    return Locale.parse(locale)


Facts = Mapping[str, Any]


# --- reasons ------------------------------------------------------------------------------------


def _topic_fit(f: Facts, r: Reader) -> str | None:
    goals = [str(g["topic"]) for g in f["goals"]]
    if not goals:
        return None
    if r.mentor:
        return _wants_to_learn(f["goals"], r)
    covered = [_with_through(g, r) for g in f["goals"] if g["covered"]]
    n, k = len(goals), len(covered)
    if r.fr:
        if n == 1:
            if k:
                return f"Couvre votre objectif : {covered[0]}"
            return f"Ne couvre pas votre objectif : {goals[0]}"
        if k == 0:
            return "Ne couvre aucun de vos objectifs"
        if k == n:
            return f"Couvre tous vos objectifs : {r.items(covered)}"
        return f"Couvre {k} de vos {n} objectifs : {r.items(covered)}"
    if n == 1:
        return f"Covers your goal: {covered[0]}" if k else f"Does not cover your goal: {goals[0]}"
    if k == 0:
        return "Covers none of your goals"
    if k == n:
        return f"Covers all your goals: {r.items(covered)}"
    return f"Covers {k} of your {n} goals: {r.items(covered)}"


def _through(goal: Facts) -> str | None:
    """The mentor's topic that covers `goal` when it is another one (related, broader or
    narrower): "django" for the goal "python". None for facts from before `through`."""
    through = goal.get("through")
    if not goal["covered"] or not through or _same(through, goal["topic"]):
        return None
    return str(through)


def _with_through(goal: Facts, r: Reader) -> str:
    """A covered goal, and through which topic in brackets: "python (through django)"."""
    through = _through(goal)
    return f"{goal['topic']} ({_VIA[r.locale]} {through})" if through else str(goal["topic"])


def _same(a: Any, b: Any) -> bool:
    return " ".join(str(a).split()).casefold() == " ".join(str(b).split()).casefold()


def _wants_to_learn(goals: Sequence[Facts], r: Reader) -> str:
    """To the mentor: what the mentee wants to learn, how much of it they can teach, and in
    brackets which goals their expertise covers through another of their topics."""
    topics = [str(g["topic"]) for g in goals]
    n, k = len(goals), sum(1 for g in goals if g["covered"])
    via = _VIA[r.locale]
    throughs = [(g["topic"], t) for g in goals if (t := _through(g))]
    if not throughs:
        how = ""
    elif n == 1:  # the goal was just named: "covers it (through django)"
        how = f" ({via} {throughs[0][1]})"
    else:
        how = f" ({r.items([f'{goal} {via} {t}' for goal, t in throughs])})"
    if r.fr:
        if n == 1:
            share = "le couvre" if k else "ne le couvre pas"
        elif k == n:
            share = "les couvre tous les deux" if n == 2 else "les couvre tous"
        else:
            share = f"en couvre {k} sur {n}" if k else "n'en couvre aucun"
        return f"Souhaite apprendre : {r.items(topics)} ; votre expertise {share}{how}"
    if n == 1:
        share = "covers it" if k else "does not cover it"
    elif k == n:
        share = "covers both" if n == 2 else f"covers all {n}"
    else:
        share = f"covers {k} of the {n}" if k else "covers none of them"
    return f"Wants to learn: {r.items(topics)}; your expertise {share}{how}"


def _languages(f: Facts, r: Reader) -> str:
    shared = [str(code) for code in f["shared"]]
    if not shared:
        return "Aucune langue en commun" if r.fr else "No language in common"
    if r.fr:
        return f"Vous parlez tous les deux {r.languages(shared)}"
    return f"You both speak {r.languages(shared)}"


def _timezone(f: Facts, r: Reader) -> str:
    gap = abs(float(f["hours_apart"]))
    if gap == 0:
        if r.fr:
            return "Vous êtes dans le même fuseau horaire"
        return "You are in the same time zone"
    if r.fr:
        hours = f"{r.number(gap)} {r.plural(gap, 'heure', 'heures')}"
        return f"Vos fuseaux horaires ont {hours} d'écart"
    hours = f"{r.number(gap)} {r.plural(gap, 'hour', 'hours')}"
    return f"Your time zones are {hours} apart"


def _seniority(f: Facts, r: Reader) -> str | None:
    """The mentor's level minus the mentee's, said from the reader's side."""
    gap = f["gap"]
    if gap is None:  # not known for both: nothing worth reading
        return None
    gap = -int(gap) if r.mentor else int(gap)  # > 0: the other person is more senior
    levels = abs(gap)
    if r.fr:
        if gap == 0:
            return "Même niveau que vous"
        where = "au-dessus de" if gap > 0 else "en dessous de"
        return f"{levels} {r.plural(levels, 'niveau', 'niveaux')} {where} vous"
    if gap == 0:
        return "Same seniority level as you"
    more = "more senior" if gap > 0 else "more junior"
    return f"{levels} {r.plural(levels, 'level', 'levels')} {more} than you"


def _department(f: Facts, r: Reader) -> str | None:
    relation = f["relation"]
    if relation == "same":
        if r.fr:
            return "Vous travaillez dans le même service"
        return "You work in the same department"
    if relation == "different":
        if r.fr:
            return "Vous travaillez dans des services différents : un regard neuf"
        return "You work in different departments: a fresh perspective"
    return None  # unknown for one of them: nothing worth reading


def _reputation(f: Facts, r: Reader) -> str | None:
    """The mentor's ratings, to the mentee only: a mentor deciding whether to take on a mentee
    learns nothing about them from their own rating."""
    if r.mentor:
        return None
    count, mean = int(f["rating_count"]), f["rating_mean"]
    if not count or mean is None:
        return "Pas encore d'avis de mentorés" if r.fr else "No ratings from mentees yet"
    rating = f"{r.number(float(mean), '0.0')}/5"
    if r.fr:
        sessions = f"{count} {r.plural(count, 'séance', 'séances')}"
        note = " (encore peu d'avis)" if f.get("provisional") else ""
        return f"Noté {rating} par ses mentorés sur {sessions}{note}"
    sessions = f"{count} {r.plural(count, 'session', 'sessions')}"
    note = " (few ratings so far)" if f.get("provisional") else ""
    return f"Rated {rating} by mentees over {sessions}{note}"


def _load(f: Facts, r: Reader) -> str:
    """The mentor's free places: to the mentee about the mentor, and to the mentor about
    themself (accepting takes one of them)."""
    free, capacity = int(f["free_places"]), int(f["capacity"])
    if capacity == 1 and free == 1:  # "1 of your 1 places" reads badly
        if r.fr:
            return f"{'Votre' if r.mentor else 'Sa'} seule place de mentorat est libre"
        return f"{'Your' if r.mentor else 'Their'} one mentoring place is free"
    if r.fr:
        places = r.plural(free, "place", "places")
        whom = "vous" if r.mentor else "lui"
        return f"Il {whom} reste {free} {places} de mentorat sur {capacity}"
    if r.mentor:
        return f"You have {free} of your {capacity} mentoring places free"
    return f"Has {free} of {capacity} mentoring places free"


def _mutual_learning(f: Facts, r: Reader) -> str | None:
    """What the mentee can share that the mentor would like to learn (`shared`: each offer and
    the mentor's interest it answers). The mentee reads their offers, the mentor their own
    interests, through the mentee's topic when it is another one. Nothing shared: nothing."""
    shared = [(str(s["topic"]), str(s["interest"])) for s in f["shared"]]
    if not shared:
        return None
    if r.mentor:
        return _can_teach(shared, r)
    offers = list(dict.fromkeys(offer for offer, _ in shared))
    interests = list(dict.fromkeys(interest for _, interest in shared))
    as_offered = all(_same(offer, interest) for offer, interest in shared)
    if r.fr:
        if as_offered:
            wish = "l'apprendre" if len(offers) == 1 else "les apprendre"
        else:
            wish = f"apprendre {r.items(interests)}"
        return f"Vous pourrez partager {r.items(offers)} avec votre mentor, qui souhaite {wish}"
    if as_offered:
        wish = f"learn {'it' if len(offers) == 1 else 'them'}"
    else:
        wish = f"learn {r.items(interests)}"
    return f"You can share {r.items(offers)} with your mentor, who would like to {wish}"


def _can_teach(shared: Sequence[tuple[str, str]], r: Reader) -> str:
    """To the mentor: each of their interests the mentee answers, once, with the mentee's other
    topics it comes through when none is the interest itself: "python (through django)"."""
    through: dict[str, list[str]] = {}
    for offer, interest in shared:
        others = through.setdefault(interest, [])
        if _same(offer, interest):
            others.append("")  # answered as it is: no "through"
        elif offer not in others:
            others.append(offer)
    taught = r.items(
        [
            f"{interest} ({_VIA[r.locale]} {r.items(offers)})" if all(offers) else interest
            for interest, offers in through.items()
        ]
    )
    if r.fr:
        return f"Peut vous apprendre {taught}, que vous souhaitez apprendre"
    return f"Can teach you {taught}, which you would like to learn"


_WRITERS: dict[str, Callable[[Facts, Reader], str | None]] = {
    "topic_fit": _topic_fit,
    "languages": _languages,
    "timezone": _timezone,
    "seniority": _seniority,
    "department": _department,
    "reputation": _reputation,
    "load": _load,
    "mutual_learning": _mutual_learning,
}


def reasons(explanation: Sequence[Mapping[str, Any]], role: str, locale: str) -> list[Reason]:
    """The reasons, largest contribution first, written to `role` ("mentee" or "mentor") in
    `locale`. An item without facts (from a publisher older than them) is skipped, and so is
    one with nothing worth reading: an unknown seniority or department, a criterion we cannot
    write yet, facts we cannot read, and, for a mentor, their own rating (about themself, not
    the mentee; their own free places are said, as accepting takes one)."""
    r = reader(role, locale)
    labels = CRITERIA[r.locale]
    ordered = sorted(explanation, key=lambda i: float(i.get("contribution") or 0), reverse=True)
    written = []
    for item in ordered:
        criterion, facts = item.get("criterion"), item.get("facts")
        write = _WRITERS.get(str(criterion))
        if not facts or write is None:
            continue
        try:
            text = write(facts, r)
        except (KeyError, TypeError, ValueError):  # facts from another system: never fatal
            continue
        if text:
            written.append(Reason(str(criterion), labels[str(criterion)], text))
    return written


# --- profile ------------------------------------------------------------------------------------


def profile(person: Mapping[str, Any] | None, locale: str, now: datetime) -> Profile:
    """The other person as the reader needs them to decide: `person` has display_name, role,
    languages, timezone, expertise (mentors), goals and, when known, offers (mentees: what they
    can share with a mentor) and learning_interests (mentors: what they would like to learn from
    a mentee); never the email address."""
    if person is None:
        return Profile(None, ())
    r = reader(str(person.get("role") or ""), locale)
    labels = PROFILE_LABELS[r.locale]
    lines = []
    if expertise := _expertise(person.get("expertise") or (), r):
        lines.append((labels["expertise"], expertise))
    if goals := _goals(person.get("goals") or (), r):
        lines.append((labels["goals"], goals))
    if offers := [str(o) for o in person.get("offers") or () if o]:
        lines.append((labels["offers"], r.items(offers, "unit")))
    if interests := [str(i) for i in person.get("learning_interests") or () if i]:
        lines.append((labels["learning_interests"], r.items(interests, "unit")))
    if languages := person.get("languages"):
        lines.append((labels["languages"], r.languages(languages)))
    if timezone := person.get("timezone"):
        lines.append((labels["timezone"], _timezone_now(str(timezone), now, r)))
    name = person.get("display_name")
    return Profile(str(name) if name else None, tuple(lines))


def _expertise(expertise: Sequence[Mapping[str, Any]], r: Reader) -> str:
    """Topics with their level in words, highest level first."""
    known = [e for e in expertise if e.get("topic")]
    known.sort(key=lambda e: -int(e.get("level") or 0))
    words = LEVELS[r.locale]
    return r.items(
        [_qualified(e["topic"], words.get(int(e.get("level") or 0))) for e in known], "unit"
    )


def _goals(goals: Sequence[Mapping[str, Any]], r: Reader) -> str:
    """Topics by priority (1 = most important first), the most important ones marked."""
    known = sorted((g for g in goals if g.get("topic")), key=lambda g: int(g.get("priority") or 3))
    top = TOP_PRIORITY[r.locale]
    return r.items(
        [_qualified(g["topic"], top if g.get("priority") == 1 else None) for g in known], "unit"
    )


def _qualified(topic: Any, qualifier: str | None) -> str:
    return f"{topic} ({qualifier})" if qualifier else str(topic)


def _timezone_now(name: str, now: datetime, r: Reader) -> str:
    """The zone and its offset at `now` (summer time included), e.g. "Europe/Paris (currently
    UTC+01:00)"."""
    try:
        offset = now.astimezone(ZoneInfo(name)).utcoffset()
    except (KeyError, ValueError):  # not a zone this machine knows: the name alone
        return name
    if offset is None:
        return name
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{name} ({CURRENTLY[r.locale]} UTC{sign}{hours:02d}:{rest:02d})"
