-- Remove lists_{v} once no live, retained or in-flight version refers to it (serving.drop_unreferenced_lists).
DROP TABLE IF EXISTS lists_{v};
