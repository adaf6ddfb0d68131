#!/usr/bin/env python3
"""Writes a deterministic "seed-like" CSV of short documents (id,text,category,year) for examples,
tests and benchmarks: `gen_seed_csv.py OUT.csv ROWS [--seed N]`. Texts are ~20-40 word pieces,
built from topic templates so that nearest-neighbour search has meaningful structure."""
import argparse
import csv
import random

TOPICS = {
    "databases": (["index", "query planner", "transaction log", "replica", "vector index", "shard"],
                  ["speeds up lookups", "keeps writes durable", "balances the load", "answers similarity queries", "recovers after a crash"]),
    "cooking": (["sourdough loaf", "tomato sauce", "risotto", "curry", "omelette", "pastry"],
                ["needs a hot oven", "tastes better with fresh herbs", "takes patience to stir", "is best served warm", "freezes well"]),
    "sports": (["marathon", "football match", "tennis final", "cycling stage", "swim relay", "chess tournament"],
               ["ended in a close finish", "drew a record crowd", "was decided by a single point", "tested every athlete's endurance", "was delayed by rain"]),
    "science": (["telescope", "enzyme", "particle collider", "glacier", "vaccine trial", "fossil"],
                ["revealed an unexpected pattern", "confirmed the hypothesis", "needs more data", "surprised the researchers", "was published this week"]),
    "travel": (["mountain village", "coastal road", "night train", "old harbour", "desert camp", "island ferry"],
               ["offers stunning views", "is crowded in summer", "is quiet in winter", "is reachable only by foot", "serves excellent local food"]),
    "finance": (["index fund", "mortgage rate", "savings account", "bond yield", "startup valuation", "household budget"],
                ["rose sharply this quarter", "depends on inflation", "rewards patience", "carries hidden fees", "was revised downwards"]),
}
OPENERS = ["Reportedly, the", "In our notes, the", "According to the survey, the", "Everyone agrees the", "Last year the", "The"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    topics = sorted(TOPICS)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "category", "year"])
        for index in range(args.rows):
            topic = topics[index % len(topics)]
            subjects, predicates = TOPICS[topic]
            text = (f"{rng.choice(OPENERS)} {rng.choice(subjects)} {rng.choice(predicates)}, "
                    f"and the {rng.choice(subjects)} {rng.choice(predicates)} (note {index}).")
            writer.writerow([f"seed-{index:07d}", text, topic, 1990 + rng.randrange(35)])


if __name__ == "__main__":
    main()
