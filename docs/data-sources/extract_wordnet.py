"""Extract (subject, relation, object) facts from Princeton WordNet 3.0.

Data: Debian package `wordnet-base` (1:3.0-37), files in /usr/share/wordnet
(apt-get install wordnet-base). Read with NLTK (pip install nltk==3.9.1).
NLTK needs a `lexnames` file that Debian does not ship; we write the standard
one into a directory of symlinks (WN_DIR).

Output: wordnet.jsonl next to this script. Extra fields:
  popularity  - fame proxy: gloss length + 10*derived forms (Freudian) + aliases + parts
                (higher = better known; sort by it and keep the top)
  count       - SemCor tag count of the subject lemma (for common nouns)
  alt_objects - other true objects (subject is not strictly many-to-one)
  gloss       - WordNet definition (for checking)
"""
import collections, json, os, re, sys, warnings

warnings.filterwarnings("ignore")
from nltk.corpus.reader.wordnet import WordNetCorpusReader

SRC = "wordnet-base==1:3.0-37 (Princeton WordNet 3.0, via nltk==3.9.1)"
HERE = os.path.dirname(os.path.abspath(__file__))
WN_DIR = os.environ.get("WN_DIR", "/work/research/wn30")
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
            "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
            "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession "
            "noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time "
            "verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption "
            "verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
            "verb.social verb.stative verb.weather adj.ppl").split()


def setup():
    os.makedirs(WN_DIR, exist_ok=True)
    for f in os.listdir("/usr/share/wordnet"):
        p = os.path.join("/usr/share/wordnet", f)
        d = os.path.join(WN_DIR, f)
        if os.path.isfile(p) and not os.path.exists(d):
            os.symlink(p, d)
    pos = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    with open(os.path.join(WN_DIR, "lexnames"), "w") as fh:
        for i, n in enumerate(LEXNAMES):
            fh.write(f"{i:02d}\t{n}\t{pos[n.split('.')[0]]}\n")


class Reader(WordNetCorpusReader):
    def map_wn(self, version="wordnet"):  # skip OMW mapping (needs nltk_data)
        return None


setup()
wn = Reader(WN_DIR, None)



def name(s, person=False):
    lem = [l.replace("_", " ") for l in s.lemma_names()]
    if person:
        multi = [l for l in lem if 2 <= len(l.split()) <= 3 and not l[0].islower()]
        if multi:
            return multi[0]
    return lem[0]


def popularity(s):
    """Fame proxy: long gloss, derived adjectives (Freudian), aliases, parts/members."""
    deriv = sum(len(l.derivationally_related_forms()) + len(l.pertainyms()) for l in s.lemmas())
    return (len(s.definition().split()) + 10 * deriv + 5 * (len(s.lemmas()) - 1)
            + 3 * len(s.part_meronyms() + s.member_meronyms() + s.instance_hyponyms()))


def closure(s):
    return set(s.closure(lambda x: x.instance_hypernyms() + x.hypernyms()))


C = lambda n: wn.synset(n)
COUNTRY, US_STATE = C("country.n.02"), C("american_state.n.01")
CITYISH = {C("city.n.01"), C("town.n.01"), C("national_capital.n.01"), C("state_capital.n.01"), C("port.n.01")}
PLACE_KIND = [  # (relation prefix, ancestor synsets)
    ("city", CITYISH),
    ("river", {C("river.n.01")}),
    ("mountain", {C("mountain.n.01"), C("mountain_peak.n.01"), C("volcano.n.02")}),
    ("lake", {C("lake.n.01")}),
    ("island", {C("island.n.01")}),
    ("region", {C("state.n.01"), C("province.n.01"), C("region.n.01"), C("district.n.01")}),
]
UNIV = {C("university.n.03"), C("university.n.02"), C("college.n.02")}

out = []


def emit(subj, rel, objs, **kw):
    objs = [o for o in dict.fromkeys(objs) if o and o != subj]
    if not objs:
        return
    d = {"subject": subj, "relation": rel, "object": objs[0], "source": SRC}
    if len(objs) > 1:
        d["alt_objects"] = objs[1:]
    d.update(kw)
    out.append(d)


def is_country(h):
    return COUNTRY in closure(h) or h == COUNTRY


def is_city(h):
    return bool(CITYISH & (closure(h) | {h}))


# ---- persons: occupation + nationality ----
NAT = """American English British Scottish Irish Welsh French German Italian Spanish Portuguese Dutch
Flemish Belgian Swiss Austrian Swedish Norwegian Danish Finnish Icelandic Russian Polish Czech Hungarian
Greek Roman Athenian Roman Japanese Chinese Indian Israeli Hebrew Egyptian Canadian Mexican Australian
Argentine Brazilian Chilean Peruvian Colombian Cuban Venezuelan Turkish Persian Arab Iranian Iraqi
Scandinavian Prussian Bohemian Romanian Bulgarian Serbian Croatian Ukrainian Latvian Lithuanian
Estonian Korean Vietnamese Pakistani Nigerian Kenyan Macedonian Spartan
Florentine Venetian Babylonian Mongolian Tibetan Afghan Ethiopian Jamaican Zealander Haitian Filipino Indonesian
Thai Burmese Moroccan Algerian Tunisian Lebanese Syrian Saudi Jordanian""".split()
NAT = set(NAT) | {"South African", "New Zealand"}


def nationality(gloss):
    g = gloss.split(";")[0]
    g = g.replace("United States", "American").replace("U.S.", "American").replace("Roman Catholic", "Catholic")
    words = g.split()[:5]
    for w in words:
        w = w.strip(",()")
        if w in NAT:
            return w
    return None


persons = [s for s in wn.all_synsets("n") if s.lexname() == "noun.person" and s.instance_hypernyms()]
for s in persons:
    subj = name(s, person=True)
    pop = popularity(s)
    occ = [h.lemma_names()[0].replace("_", " ") for h in s.instance_hypernyms()]
    emit(subj, "person_occupation", occ, popularity=pop, gloss=s.definition())
    nat = nationality(s.definition())
    if nat:
        emit(subj, "person_nationality", [nat], popularity=pop, gloss=s.definition())

# ---- places, landmarks, universities via part holonyms ----
for s in wn.all_synsets("n"):
    if not s.instance_hypernyms():
        continue
    hol = s.part_holonyms()
    if not hol:
        continue
    anc = closure(s)
    subj = name(s)
    pop = popularity(s)
    countries = [name(h) for h in hol if is_country(h)]
    states = [name(h) for h in hol if US_STATE in closure(h)]
    cities = [name(h) for h in hol if is_city(h)]
    if s.lexname() == "noun.artifact":
        if anc & UNIV:
            emit(subj, "university_city", cities, popularity=pop, gloss=s.definition())
            emit(subj, "university_us_state", states, popularity=pop, gloss=s.definition())
            continue
        emit(subj, "landmark_city", cities, popularity=pop, gloss=s.definition())
        # country of landmark: directly, or through its city
        lc = countries + [name(h2) for h in hol if is_city(h) for h2 in h.part_holonyms() if is_country(h2)]
        emit(subj, "landmark_country", lc, popularity=pop, gloss=s.definition())
        continue
    if s.lexname() not in ("noun.location", "noun.object"):
        continue
    for kind, kset in PLACE_KIND:
        if anc & kset:
            if kind == "region" and is_country(s):
                break
            emit(subj, f"{kind}_country", countries, popularity=pop, gloss=s.definition())
            if kind == "city":
                emit(subj, "city_us_state", states, popularity=pop, gloss=s.definition())
            break

# ---- deities -> mythology ----
for s in wn.all_synsets("n"):
    for h in s.instance_hypernyms():
        m = re.match(r"(\w+)_deity\.n", h.name())
        if m:
            emit(name(s), "deity_mythology", [m.group(1).capitalize()], popularity=popularity(s),
                 gloss=s.definition())

# ---- common-noun taxonomies (filter by SemCor count > 0 = common words) ----
def lemma_count(s):
    return sum(l.count() for l in s.lemmas())


def taxonomy(rel, families, root):
    for s in C(root).closure(lambda x: x.hyponyms()):
        anc = closure(s)
        for fam_syn, label in families:
            if C(fam_syn) in anc:
                cnt = lemma_count(s)
                lem = s.lemma_names()[0]
                keep = cnt > 0 or (rel == "instrument_family" and "_" not in lem)
                if keep and lem[0].islower():
                    emit(lem.replace("_", " "), rel, [label], count=cnt, gloss=s.definition())
                break


taxonomy("instrument_family", [("keyboard_instrument.n.01", "keyboard"), ("brass.n.02", "brass"),
                               ("woodwind.n.01", "woodwind"), ("stringed_instrument.n.01", "string"),
                               ("percussion_instrument.n.01", "percussion")], "musical_instrument.n.01")
taxonomy("animal_class", [("mammal.n.01", "mammal"), ("bird.n.01", "bird"), ("fish.n.01", "fish"),
                          ("reptile.n.01", "reptile"), ("amphibian.n.03", "amphibian"),
                          ("insect.n.01", "insect"), ("arachnid.n.01", "arachnid")], "animal.n.01")

# ---- languages -> family (direct hypernym, when it is a family not 'natural language') ----
for s in C("natural_language.n.01").closure(lambda x: x.hyponyms()):
    if not s.hyponyms() and s.hypernyms():
        fam = s.hypernyms()[0]
        if fam != C("natural_language.n.01"):
            emit(name(s), "language_family", [name(fam)], count=lemma_count(s), gloss=s.definition())

with open(os.path.join(HERE, "wordnet.jsonl"), "w") as fh:
    for d in out:
        fh.write(json.dumps(d, ensure_ascii=False) + "\n")
c = collections.Counter(d["relation"] for d in out)
for k, v in sorted(c.items()):
    print(k, v, file=sys.stderr)
